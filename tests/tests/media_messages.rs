//! Media messages end to end (issue 12), against the real broker and its media endpoint: a
//! PNG image and a non-image file go from one registered number to another with
//! `hotline-chat send-media`, `listen` shows their fields, `fetch` brings them back byte for
//! byte with the hash checked, and the image's thumbnail is a JPEG within 96 px; a fetch
//! with a wrong hash fails and leaves no file. The library does the same, and reports wrong
//! credentials, an upload over the limit and an unknown id in plain words.

use std::path::Path;
use std::time::Duration;

use hotline_client::media::{MediaClient, MediaError, MediaMessage};
use hotline_protocol::{MessageKind, ServerFrame};
use hotline_tests::{events, ok, refused, Broker};
use sha2::{Digest, Sha256};

const ALICE: &str = "+15550120001";
const BOB: &str = "+15550120002";
const T: Duration = Duration::from_secs(30);

/// A 300×200 PNG with a gradient and some transparency (so the thumbnail has to flatten it).
fn write_png(path: &Path) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(300, 200, |x, y| image::Rgba([(x % 256) as u8, (y * 255 / 200) as u8, ((x + y) % 256) as u8, if x < 20 { 128 } else { 255 }]));
    image.save(path).unwrap();
    std::fs::read(path).unwrap()
}

/// `len` bytes that do not compress and are no image.
fn write_blob(path: &Path, len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Files in `dir` whose names start with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn an_image_and_a_file_round_trip_through_hotline_chat() {
    let broker = Broker::start().unwrap();
    let media = broker.media.expect("the media endpoint is on by default");
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    broker.register_chat(&alice, ALICE, 5).unwrap();
    broker.register_chat(&bob, BOB, 5).unwrap();

    let png_path = dir.path().join("cat.png");
    let png = write_png(&png_path);
    let blob_path = dir.path().join("notes.bin");
    let blob = write_blob(&blob_path, 300 * 1024 + 7);

    let out = ok(broker.chat(&alice).args(["send-media", BOB]).arg(&png_path).args(["--caption", "my cat"]).output().unwrap());
    assert!(out.trim().parse::<u64>().is_ok(), "expected the message id, got {out:?}");
    ok(broker.chat(&alice).args(["send-media", BOB]).arg(&blob_path).output().unwrap());

    let got = events(broker.chat(&bob).args(["listen", "--count", "2", "--timeout", "30"]).output().unwrap());
    assert_eq!(got.len(), 2, "{got:?}");
    let (image, file) = (&got[0], &got[1]);
    for event in [image, file] {
        assert_eq!((event["type"].as_str(), event["kind"].as_str(), event["from"].as_str()), (Some("message"), Some("media"), Some(ALICE)), "{event}");
        assert!(event["url"].as_str().unwrap().starts_with(&format!("https://{media}/media/")), "{event}");
        assert!(event.get("text").is_none(), "the body's fields replace the raw text: {event}");
    }
    assert_eq!(image["mime"], "image/png");
    assert_eq!(image["name"], "cat.png");
    assert_eq!(image["size"], png.len());
    assert_eq!(image["sha256"], sha256(&png));
    assert_eq!(image["caption"], "my cat");
    assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(300), Some(200)));
    // listen decoded the thumbnail as a JPEG: 96 px on the longest side, the aspect kept.
    let thumb = &image["thumbnail"];
    assert_eq!((thumb["width"].as_u64(), thumb["height"].as_u64()), (Some(96), Some(64)), "{image}");
    assert!(thumb["bytes"].as_u64().unwrap() < 16 * 1024, "{thumb}");

    assert_eq!(file["mime"], "application/octet-stream");
    assert_eq!(file["name"], "notes.bin");
    assert_eq!(file["size"], blob.len());
    assert_eq!(file["sha256"], sha256(&blob));
    assert!(file["caption"].is_null() && file["thumbnail"].is_null() && file["width"].is_null(), "{file}");

    // Bob fetches both, byte for byte, checked against the hash in the message.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    for (event, bytes) in [(image, &png), (file, &blob)] {
        let dest = inbox.join(event["name"].as_str().unwrap());
        let url = event["url"].as_str().unwrap();
        let said = ok(broker.chat(&bob).args(["fetch", url, "-o"]).arg(&dest).args(["--sha256", event["sha256"].as_str().unwrap()]).output().unwrap());
        assert!(said.contains(&format!("{} bytes, sha256 {}", bytes.len(), sha256(bytes))), "{said}");
        assert!(std::fs::read(&dest).unwrap() == *bytes, "{} differs from what was sent", dest.display());
    }
    // Without --sha256 the server's ETag is checked.
    let again = inbox.join("again.bin");
    ok(broker.chat(&bob).args(["fetch", file["url"].as_str().unwrap(), "-o"]).arg(&again).output().unwrap());
    assert!(std::fs::read(&again).unwrap() == blob);

    // A wrong hash: an error naming both hashes, and no file (nor a leftover temporary one).
    let wrong = inbox.join("wrong.bin");
    let err = refused(broker.chat(&bob).args(["fetch", file["url"].as_str().unwrap(), "-o"]).arg(&wrong).args(["--sha256", &"0".repeat(64)]).output().unwrap());
    assert!(err.contains("hash mismatch") && err.contains(&sha256(&blob)) && err.contains("nothing was saved"), "{err}");
    assert!(!wrong.exists(), "a download with the wrong hash was kept");
    assert!(files_starting(&inbox, ".hotline-fetch-").is_empty(), "temporary files left: {:?}", files_starting(&inbox, ".hotline-fetch-"));
    // The wrong hash does not replace a good file either.
    let err = refused(broker.chat(&bob).args(["fetch", image["url"].as_str().unwrap(), "-o"]).arg(inbox.join("cat.png")).args(["--sha256", &sha256(b"other")]).output().unwrap());
    assert!(err.contains("hash mismatch"), "{err}");
    assert!(std::fs::read(inbox.join("cat.png")).unwrap() == png);

    // An unknown id, and a URL on another server (the key is not sent there).
    let unknown = format!("https://{media}/media/{}", "ab".repeat(16));
    let err = refused(broker.chat(&bob).args(["fetch", &unknown, "-o"]).arg(inbox.join("x")).output().unwrap());
    assert!(err.contains("no such media (unknown or expired)"), "{err}");
    let err = refused(broker.chat(&bob).args(["fetch", "https://203.0.113.9:4443/media/00", "-o"]).arg(inbox.join("x")).output().unwrap());
    assert!(err.contains("is not on the media server"), "{err}");
    assert!(!inbox.join("x").exists());

    // An image that does not decode is refused before anything is sent.
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, b"not a picture at all").unwrap();
    let err = refused(broker.chat(&alice).args(["send-media", BOB]).arg(&fake).output().unwrap());
    assert!(err.contains("no thumbnail for") && err.contains("fake.png"), "{err}");
    let after = events(broker.chat(&bob).args(["listen", "--timeout", "2"]).output().unwrap());
    assert!(after.iter().all(|e| e["type"] != "message"), "{after:?}");
}

#[tokio::test]
async fn the_library_uploads_sends_receives_and_fetches_and_names_http_errors() {
    // A small upload limit, to see 413 reported with it.
    let broker = Broker::start_with_config("[media]\nmax_upload_bytes = 1048576\n").unwrap();
    let base = format!("https://{}", broker.media.unwrap());
    let ca = broker.data.join("tls/cert.pem");
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("photo.PNG");
    let png = write_png(&png_path);

    let alice_media = MediaClient::new(&base, &ca, ALICE, &alice_key).unwrap();
    let sent = alice_media.prepare(&png_path, None).await.unwrap();
    assert_eq!((sent.mime.as_str(), sent.size, sent.sha256.as_str()), ("image/png", png.len() as u64, sha256(&png).as_str()));
    let mut alice = broker.connect().await.unwrap();
    assert_eq!(alice.version(), 4);
    alice.login(ALICE, &alice_key).await.unwrap();
    alice.send_typed(BOB, sent.kind(), sent.to_body()).await.unwrap();
    match alice.next_frame_within(T).await.unwrap() {
        ServerFrame::Sent { .. } => {}
        other => panic!("expected Sent, got {other:?}"),
    }

    let mut bob = broker.connect().await.unwrap();
    bob.login(BOB, &bob_key).await.unwrap();
    let (id, body) = match bob.next_frame_within(T).await.unwrap() {
        ServerFrame::TypedMessage { id, from, kind, body, .. } => {
            assert_eq!((from.as_str(), kind), (ALICE, MessageKind::Media { mime: "image/png".into() }));
            (id, body)
        }
        other => panic!("expected a TypedMessage, got {other:?}"),
    };
    bob.ack(id).await.unwrap();
    let got = MediaMessage::from_body(&body).unwrap();
    assert_eq!(got, sent);
    let jpeg = got.thumbnail_jpeg().unwrap().expect("an image has a thumbnail");
    let thumb = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).expect("the thumbnail is a JPEG");
    assert_eq!((thumb.width(), thumb.height()), (96, 64));
    assert_eq!((got.width, got.height), (Some(300), Some(200)));

    let bob_media = MediaClient::new(&base, &ca, BOB, &bob_key).unwrap();
    let dest = dir.path().join("fetched.png");
    let (size, hash) = bob_media.fetch(&got.url, Some(&got.sha256), &dest).await.unwrap();
    assert_eq!((size, hash.as_str()), (png.len() as u64, got.sha256.as_str()));
    assert!(std::fs::read(&dest).unwrap() == png);
    let wrong = dir.path().join("wrong.png");
    let err = bob_media.fetch(&got.url, Some(&sha256(b"x")), &wrong).await.unwrap_err();
    assert!(matches!(err, MediaError::HashMismatch { .. }), "{err}");
    assert!(!wrong.exists());

    // Wrong credentials: 401 in words, for uploads and fetches alike.
    let stranger = MediaClient::new(&base, &ca, BOB, "not-the-key").unwrap();
    let err = stranger.upload(&png_path, "image/png").await.unwrap_err();
    assert!(matches!(err, MediaError::Unauthorized(_)), "{err}");
    assert!(err.to_string().contains("wrong number or key"), "{err}");
    let err = stranger.fetch(&got.url, None, &wrong).await.unwrap_err();
    assert!(matches!(err, MediaError::Unauthorized(_)), "{err}");

    // Over the limit: 413 with the limit, refused before the body is sent.
    let big = dir.path().join("big.bin");
    write_blob(&big, 3 << 20);
    let err = alice_media.upload(&big, "application/octet-stream").await.unwrap_err();
    match &err {
        MediaError::TooLarge { size, detail } => {
            assert_eq!(*size, 3 << 20);
            assert!(detail.contains("1048576"), "{err}");
        }
        other => panic!("expected TooLarge, got {other}"),
    }

    // Unknown id: 404 in words; nothing written.
    let err = bob_media.fetch(&format!("{base}/media/{}", "cd".repeat(16)), None, &wrong).await.unwrap_err();
    assert!(matches!(err, MediaError::NotFound(_)), "{err}");
    assert!(!wrong.exists());
    alice.close().await;
    bob.close().await;
}
