//! A second device registers the same number: the old key is refused, the old session is
//! closed with the reason, and the new device gets what was queued.

use std::time::Duration;

use hotline_client::ClientError;
use hotline_protocol::{close_code, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550400001";
const BOB: &str = "+15550400002";
const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn registering_on_a_new_device_revokes_the_old_key_and_closes_the_old_session() {
    let broker = Broker::start().unwrap();
    let old_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut old_device = broker.login(ALICE, &old_key).await.unwrap();

    let new_key = broker.register(ALICE).await.unwrap();
    assert_ne!(new_key, old_key);

    // The old session is closed with KEY_REVOKED and a reason a person can read.
    match old_device.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::KEY_REVOKED);
            assert!(reason.contains("another device"), "{reason}");
        }
        other => panic!("expected the old session to be closed, got {other:?}"),
    }

    // The old key no longer logs in.
    let mut again = broker.connect().await.unwrap();
    match again.login(ALICE, &old_key).await {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, close_code::AUTH_FAILED),
        other => panic!("old key was not refused: {other:?}"),
    }

    // The new device works, and gets messages sent to the number.
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    bob.send(ALICE, b"new phone?".to_vec()).await.unwrap();
    assert!(matches!(bob.next_frame_within(T).await.unwrap(), ServerFrame::Sent { .. }));
    let mut new_device = broker.login(ALICE, &new_key).await.unwrap();
    assert!(matches!(new_device.next_frame_within(T).await.unwrap(), ServerFrame::TypedMessage { body, .. } if body == b"new phone?"));
}

#[tokio::test]
async fn logging_in_again_replaces_the_older_connection() {
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let mut first = broker.login(ALICE, &key).await.unwrap();
    let _second = broker.login(ALICE, &key).await.unwrap();
    match first.next_frame_within(T).await {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, close_code::SESSION_REPLACED),
        other => panic!("expected the first connection to be replaced, got {other:?}"),
    }
}
