//! Faults in a cluster (issue 14): real `nats-server` processes and real Hotline nodes
//! killed with SIGKILL under load. Whatever dies, every message a client saw `Sent` for is
//! delivered, duplicates come only under the same id, and each sender's order is kept.
//! `HOTLINE_CLUSTER_SOAK=1` makes the runs longer (more messages, more kills).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use hotline_tests::cluster::NatsCluster;

/// The test harness's own premise: three NATS servers with JetStream form one cluster, and
/// a replicated (R3) stream keeps accepting and serving writes while any one server is
/// killed, including the stream's leader; the killed server, started again on its store,
/// catches up (the stream still serves everything with another server down).
#[tokio::test(flavor = "multi_thread")]
async fn an_r3_stream_keeps_every_acknowledged_write_through_a_nats_server_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(dir.path(), 3).unwrap();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.urls().iter().map(|u| u.parse().unwrap()).collect::<Vec<async_nats::ServerAddr>>())
        .await
        .unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "FAULTS".into(),
        subjects: vec!["faults.>".into()],
        storage: jetstream::stream::StorageType::File,
        num_replicas: 3,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();

    // Publishes message `i` until acknowledged (the message id makes a retry stored once).
    let publish = |i: u64| {
        let js = js.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut retries = 0;
            loop {
                let attempt = async {
                    let message = jetstream::message::PublishMessage::build().payload(format!("m{i}").into()).message_id(format!("m{i}"));
                    js.send_publish("faults.m", message).await?.await.map_err(async_nats::Error::from)
                };
                match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                    Ok(Ok(ack)) => {
                        if retries > 0 {
                            eprintln!("publish {i}: acknowledged after {retries} retries");
                        }
                        return ack.sequence;
                    }
                    Ok(Err(e)) if Instant::now() < deadline && retries == 0 => eprintln!("publish {i}: {e}, retrying"),
                    Err(_) if Instant::now() < deadline && retries == 0 => eprintln!("publish {i}: no ack within 5 s, retrying"),
                    _ if Instant::now() < deadline => {}
                    other => panic!("message {i} never acknowledged: {other:?}"),
                }
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut acked = Vec::new();
    for i in 0..100 {
        acked.push(publish(i).await);
    }
    let info = js.get_stream("FAULTS").await.unwrap().get_info().await.unwrap();
    let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
    let victim: usize = leader.strip_prefix("nats-").and_then(|i| i.parse().ok()).expect("a harness server name");

    nats.kill(victim).unwrap();
    let killed = Instant::now();
    acked.push(publish(100).await);
    eprintln!("first write acknowledged {:.1?} after killing the stream leader {leader}", killed.elapsed());
    for i in 101..200 {
        acked.push(publish(i).await);
    }
    assert_eq!(acked, (1..=200).collect::<Vec<u64>>(), "each write stored once, in order");

    tokio::task::block_in_place(|| nats.start_again(victim)).unwrap();
    let other = (victim + 1) % 3;
    tokio::task::block_in_place(|| nats.kill(other)).unwrap();
    let stream = js.get_stream("FAULTS").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for seq in 1..=200u64 {
        let message = loop {
            match stream.direct_get(seq).await {
                Ok(message) => break message,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("get {seq}: {e}, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("message {seq} not readable with {other} down: {e}"),
            }
        };
        assert_eq!(message.payload, format!("m{}", seq - 1).as_bytes());
    }
    tokio::task::block_in_place(|| nats.stop()).unwrap();
}
