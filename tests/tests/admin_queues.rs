//! The admin API's queue and account routes, as an operator uses them against the real
//! broker: list accounts (number order, online, queued, paging), see a recipient's stored
//! queue and purge it (nothing is delivered afterwards), and remove an account while its
//! number is logged in (the session closes with KEY_REVOKED, the key stops working, sends
//! to the number are refused).

use std::io::{Read, Write};
use std::time::Duration;

use hotline_client::ClientError;
use hotline_protocol::{close_code, ErrorCode, ServerFrame};
use hotline_tests::{eventually, Broker};
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
/// The monitor samples often, so `/api/queues` follows a change quickly.
const CONFIG: &str = "[alerts]\nsample_ms = 100\n";

/// `method path` on the admin endpoint: the status code and the JSON body.
fn admin_request(broker: &Broker, method: &str, path: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(broker.admin).expect("connecting to the admin endpoint");
    stream.set_read_timeout(Some(T)).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", broker.admin).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body:?}"));
    (status, json)
}

/// `GET path`, which must answer 200 with JSON.
fn api(broker: &Broker, path: &str) -> Value {
    let (status, body) = broker.admin_get(path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The items `/api/queues` lists for `number`'s stored queue, `None` when it is not listed.
fn stored_items(broker: &Broker, number: &str) -> Option<u64> {
    let queues = api(broker, "/api/queues?top=10");
    let stored = queues["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "stored").cloned().expect("a stored kind");
    stored["top"].as_array().unwrap().iter().find(|q| q["name"] == number).map(|q| q["items"].as_u64().unwrap())
}

/// Sends `n` messages from `sender` to `to`, each answered `Sent` (stored).
async fn send_stored(sender: &mut hotline_client::Client, to: &str, n: usize) {
    for i in 0..n {
        let cid = sender.send(to, format!("message {i}").into_bytes()).await.unwrap();
        match sender.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id, .. } => assert_eq!(client_id, cid),
            other => panic!("expected Sent, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn accounts_are_listed_in_number_order_with_online_and_queued_and_page_by_page() {
    let broker = Broker::start_with_config(CONFIG).unwrap();
    // Registered out of number order.
    let numbers = ["+15550810003", "+15550810001", "+15550810002"];
    let mut keys = Vec::new();
    for n in numbers {
        keys.push(broker.register(n).await.unwrap());
    }
    // +...0003 is logged in and leaves two messages for +...0001 (offline).
    let mut online = broker.login(numbers[0], &keys[0]).await.unwrap();
    send_stored(&mut online, numbers[1], 2).await;

    let all = api(&broker, "/api/accounts");
    let accounts = all["accounts"].as_array().unwrap();
    let phones: Vec<&str> = accounts.iter().map(|a| a["phone"].as_str().unwrap()).collect();
    assert_eq!(phones, ["+15550810001", "+15550810002", "+15550810003"], "{all}");
    assert_eq!(all["next"], Value::Null, "{all}");
    for a in accounts {
        assert!(a["registered_at_ms"].as_u64().is_some_and(|ms| ms > 0), "{a}");
    }
    let online_flags: Vec<bool> = accounts.iter().map(|a| a["online"].as_bool().unwrap()).collect();
    assert_eq!(online_flags, [false, false, true], "{all}");
    let queued: Vec<u64> = accounts.iter().map(|a| a["queued"].as_u64().unwrap()).collect();
    assert_eq!(queued, [2, 0, 0], "{all}");

    // Two a page: the first page says where the next starts; the second has the rest.
    let first = api(&broker, "/api/accounts?limit=2");
    let phones: Vec<&str> = first["accounts"].as_array().unwrap().iter().map(|a| a["phone"].as_str().unwrap()).collect();
    assert_eq!(phones, ["+15550810001", "+15550810002"], "{first}");
    let next = first["next"].as_str().unwrap_or_else(|| panic!("no next in {first}"));
    assert_eq!(next, "+15550810002");
    // The `next` pasted as is (a raw `+`) and percent-encoded give the same page.
    for after in [next.to_string(), next.replace('+', "%2B")] {
        let second = api(&broker, &format!("/api/accounts?limit=2&after={after}"));
        let phones: Vec<&str> = second["accounts"].as_array().unwrap().iter().map(|a| a["phone"].as_str().unwrap()).collect();
        assert_eq!(phones, ["+15550810003"], "after={after}: {second}");
        assert_eq!(second["next"], Value::Null, "after={after}: {second}");
    }

    // A limit that is not a number is refused with the reason.
    let (status, body) = broker.admin_get("/api/accounts?limit=many").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit"), "{body}");
}

#[tokio::test]
async fn a_purged_queue_leaves_the_queue_list_and_delivers_nothing() {
    let broker = Broker::start_with_config(CONFIG).unwrap();
    let (sender_number, offline_number) = ("+15550820001", "+15550820002");
    let sender_key = broker.register(sender_number).await.unwrap();
    let offline_key = broker.register(offline_number).await.unwrap();
    let mut sender = broker.login(sender_number, &sender_key).await.unwrap();
    send_stored(&mut sender, offline_number, 5).await;

    // The monitor's next sample shows the queue with its 5 items.
    eventually(T, || (stored_items(&broker, offline_number) == Some(5)).then_some(())).unwrap_or_else(|e| {
        panic!("{e}: {}", api(&broker, "/api/queues"));
    });

    let (status, answer) = admin_request(&broker, "POST", &format!("/api/queues/{offline_number}/purge"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["number"], offline_number, "{answer}");
    assert_eq!(answer["purged"], 5, "{answer}");

    eventually(T, || stored_items(&broker, offline_number).is_none().then_some(())).unwrap_or_else(|e| {
        panic!("{e}: {}", api(&broker, "/api/queues"));
    });

    // The number logs in and gets nothing; the account itself is still there.
    let mut recipient = broker.login(offline_number, &offline_key).await.unwrap();
    match recipient.next_frame_within(Duration::from_millis(1500)).await {
        Err(ClientError::Timeout) => {}
        other => panic!("expected nothing after the purge, got {other:?}"),
    }
    // A second purge finds nothing.
    let (status, answer) = admin_request(&broker, "POST", &format!("/api/queues/{offline_number}/purge"));
    assert_eq!((status, &answer["purged"]), (200, &Value::from(0)), "{answer}");

    // Something that is not a number is refused with the reason.
    for bad in ["not-a-number", "15550820002"] {
        let (status, answer) = admin_request(&broker, "POST", &format!("/api/queues/{bad}/purge"));
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("E.164")), "{bad}: {answer}");
    }
}

#[tokio::test]
async fn removing_an_account_closes_its_session_revokes_its_key_and_refuses_sends_to_it() {
    let broker = Broker::start_with_config(CONFIG).unwrap();
    let (sender_number, removed_number) = ("+15550830001", "+15550830002");
    let sender_key = broker.register(sender_number).await.unwrap();
    let removed_key = broker.register(removed_number).await.unwrap();
    let mut sender = broker.login(sender_number, &sender_key).await.unwrap();
    send_stored(&mut sender, removed_number, 2).await;

    // The number logs in and receives the two messages without acknowledging them: they
    // stay in its queue.
    let mut device = broker.login(removed_number, &removed_key).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(device.next_frame_within(T).await.unwrap(), ServerFrame::TypedMessage { .. }));
    }

    let (status, answer) = admin_request(&broker, "DELETE", &format!("/api/accounts/{removed_number}"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["phone"], removed_number, "{answer}");
    assert_eq!(answer["removed"], true, "{answer}");
    assert_eq!(answer["purged"], 2, "{answer}");

    // Its session is closed with KEY_REVOKED and a reason.
    match device.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::KEY_REVOKED, "{reason}");
            assert!(reason.contains("removed"), "{reason}");
        }
        other => panic!("expected the session to be closed, got {other:?}"),
    }

    // The old key no longer logs in.
    let mut again = broker.connect().await.unwrap();
    match again.login(removed_number, &removed_key).await {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, close_code::AUTH_FAILED),
        other => panic!("the removed account's key was not refused: {other:?}"),
    }

    // A send to it is refused as an unknown recipient.
    let cid = sender.send(removed_number, b"still there?".to_vec()).await.unwrap();
    match sender.next_frame_within(T).await.unwrap() {
        ServerFrame::SendFailed { client_id, error: ErrorCode::UnknownRecipient, reason } => {
            assert_eq!(client_id, cid);
            assert!(reason.contains(removed_number), "{reason}");
        }
        other => panic!("expected SendFailed UnknownRecipient, got {other:?}"),
    }

    // It is no longer listed, and a second removal finds nothing.
    let listed = api(&broker, "/api/accounts");
    let phones: Vec<&str> = listed["accounts"].as_array().unwrap().iter().map(|a| a["phone"].as_str().unwrap()).collect();
    assert_eq!(phones, [sender_number], "{listed}");
    let (status, answer) = admin_request(&broker, "DELETE", &format!("/api/accounts/{removed_number}"));
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains(removed_number)), "{answer}");
}
