//! `hotline-chat`: try Hotline by hand or from scripts. A profile folder remembers the
//! server, the CA file, the number and its key.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hotline_client::media::{self, MediaClient, MediaMessage};
use hotline_client::{Client, ConnectOptions, ReceivedMessage};
use hotline_protocol::{MessageKind, ReceiptStatus, ServerFrame};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Parser)]
#[command(name = "hotline-chat", version, about = "Command-line client for the Hotline broker")]
struct Cli {
    /// Profile folder holding profile.json (server, CA, number, key).
    #[arg(long, default_value = "hotline-profile", global = true)]
    profile: PathBuf,
    /// Broker address [default: the profile's, else 127.0.0.1:4433].
    #[arg(long, global = true)]
    server: Option<SocketAddr>,
    /// CA certificate file [default: the profile's, else ./hotline-data/tls/cert.pem].
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Name the broker's certificate carries.
    #[arg(long, default_value = "localhost", global = true)]
    server_name: String,
    /// The broker's media server, https://HOST:PORT [default: the profile's, else the
    /// broker's host on port 4443, e.g. https://127.0.0.1:4443].
    #[arg(long, env = "HOTLINE_MEDIA", global = true)]
    media: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register PHONE: request a code by SMS and read it from stdin, or verify --code.
    /// Asking for a code saves the server, CA and number in the profile, so the later
    /// `register --code CODE` needs neither --server, --ca nor PHONE again.
    Register {
        /// The number, in E.164 form [default with --code: the number a code was last requested for].
        phone: Option<String>,
        /// Verify a code requested earlier instead of requesting one.
        #[arg(long)]
        code: Option<String>,
    },
    /// Send TEXT to TO; prints the message id.
    Send {
        to: String,
        text: String,
        /// State to wait for before exiting.
        #[arg(long, value_enum, default_value_t = Wait::Sent)]
        wait: Wait,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// How many times to send again, with the same client id, when the broker answers
        /// Retryable (a transient failure), QueueFull or RateLimited (the recipient's queue
        /// is full); waits 0.5 s, 1 s, 2 s… (at most 8 s) between.
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// Upload FILE to the broker's media server and send TO a media message describing it
    /// (with a thumbnail for a JPEG, PNG, GIF or WebP image); prints the message id.
    SendMedia {
        to: String,
        file: PathBuf,
        /// Text to show with the file.
        #[arg(long)]
        caption: Option<String>,
        /// State to wait for before exiting.
        #[arg(long, value_enum, default_value_t = Wait::Sent)]
        wait: Wait,
        /// Give up after this many seconds (the upload included).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// How many times to send the message again on a retryable refusal (as `send`).
        #[arg(long, default_value_t = 3)]
        retries: u32,
    },
    /// Download a media message's URL into FILE, checking its SHA-256. Nothing is written
    /// unless the whole file arrives with the right hash.
    Fetch {
        url: String,
        /// Where to save it (replaced only when the download is complete and correct).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// The SHA-256 the file must have: the message's `sha256` [default: the media
        /// server's ETag, which checks the transfer only].
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Manage groups (commands for the router plugin). Send to a group with `send #name TEXT`.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Send any command to a plugin: SLOT (router, registrar, receipts, notifier), NAME, ARGS.
    /// Example: `command receipts read-receipts off`.
    // The subcommand is called `command`; clap names it after the variant.
    #[allow(clippy::enum_variant_names)]
    Command { slot: String, name: String, args: Vec<String> },
    /// Set this device's push token (protocol version 4), where the operator's push gateway
    /// wakes it while it is not connected: TOKEN as the platform's push service gave it
    /// (at most 4096 bytes, no control characters); `--clear` removes it.
    PushToken {
        /// The token (an APNs device token, an FCM registration token, …).
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        token: Option<String>,
        /// Remove the stored token instead: the device is no longer woken.
        #[arg(long)]
        clear: bool,
    },
    /// Print incoming messages and receipts as JSON lines, acknowledging each. A media
    /// message (`"kind": "media"`) shows its url, mime, size, sha256, name, caption and
    /// thumbnail (its bytes and size in pixels); fetch it with `fetch URL -o FILE --sha256 HASH`.
    Listen {
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Also report each message as read.
        #[arg(long)]
        read: bool,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create group NAME (e.g. #team); you become its owner and first member.
    Create { name: String },
    /// Add PHONE to group NAME.
    Add { name: String, phone: String },
    /// Remove PHONE from group NAME.
    Remove { name: String, phone: String },
    /// List the members of group NAME.
    Members { name: String },
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Wait {
    Sent,
    Delivered,
    Read,
}

#[derive(Serialize, Deserialize, Default)]
struct Profile {
    server: Option<SocketAddr>,
    ca: Option<PathBuf>,
    phone: Option<String>,
    key: Option<String>,
    /// The media server (https://HOST:PORT), if given when registering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media: Option<String>,
    /// The number a code was requested for and not yet verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_phone: Option<String>,
}

impl Profile {
    fn path(dir: &Path) -> PathBuf {
        dir.join("profile.json")
    }

    fn load(dir: &Path) -> Result<Profile> {
        let path = Profile::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the profile, readable by its owner only (mode 0600: it holds the key), by
    /// writing a new file and renaming it over the old one.
    fn save(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = Profile::path(dir);
        let tmp = dir.join(".profile.json.tmp");
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(self)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }

    fn account(&self, dir: &Path) -> Result<(String, String)> {
        match (&self.phone, &self.key) {
            (Some(p), Some(k)) => Ok((p.clone(), k.clone())),
            _ => bail!("profile {} has no registered number; run `hotline-chat --profile {} register PHONE` first", dir.display(), dir.display()),
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("hotline-chat: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut profile = Profile::load(&cli.profile)?;
    let server = cli.server.or(profile.server).unwrap_or_else(|| "127.0.0.1:4433".parse().unwrap());
    let ca = cli.ca.clone().or(profile.ca.clone()).unwrap_or_else(|| PathBuf::from("hotline-data/tls/cert.pem"));
    let ca = std::path::absolute(&ca).unwrap_or(ca);
    // Default keep-alive and idle timeout: a broker restart is noticed within seconds.
    let opts = ConnectOptions { server_name: cli.server_name.clone(), ..ConnectOptions::new(server, ca.clone()) };
    match cli.command {
        Command::Register { phone, code } => {
            let phone = match (phone, &code, &profile.pending_phone) {
                (Some(phone), _, _) => phone,
                (None, Some(_), Some(pending)) => pending.clone(),
                (None, Some(_), None) => bail!("no code was requested with this profile; give the number: register PHONE --code CODE"),
                (None, None, _) => bail!("give the number to register: register PHONE"),
            };
            let mut client = Client::connect(&opts).await?;
            let code = match code {
                Some(code) => code,
                None => {
                    let secs = client.request_code(&phone).await?;
                    // The verification step may come later, without --server and --ca.
                    profile.server = Some(server);
                    profile.ca = Some(ca.clone());
                    profile.media = cli.media.clone().or(profile.media.take());
                    profile.pending_phone = Some(phone.clone());
                    profile.save(&cli.profile)?;
                    eprintln!("A code was sent to {phone} by SMS (valid {} minutes). Enter it:", secs / 60);
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    let line = line.trim().to_string();
                    if line.is_empty() {
                        eprintln!("No code entered. Verify later with: hotline-chat --profile {} register --code CODE", cli.profile.display());
                        client.close().await;
                        return Ok(());
                    }
                    line
                }
            };
            let key = client.verify(&phone, &code).await?;
            client.close().await;
            let media = cli.media.clone().or(profile.media.take());
            profile = Profile { server: Some(server), ca: Some(ca), phone: Some(phone.clone()), key: Some(key), media, pending_phone: None };
            profile.save(&cli.profile)?;
            println!("registered {phone}; key saved in {}", Profile::path(&cli.profile).display());
            Ok(())
        }
        Command::Send { to, text, wait, timeout, retries } => {
            let (phone, key) = profile.account(&cli.profile)?;
            let mut client = Client::connect(&opts).await?;
            client.login(&phone, &key).await?;
            let limit = Duration::from_secs(timeout);
            let result = tokio::time::timeout(limit, send(&mut client, &to, MessageKind::Text, text.into_bytes(), wait, retries)).await;
            client.close().await;
            match result {
                Ok(r) => r,
                Err(_) => bail!("timed out after {timeout} s waiting for the message to be {}", wait_name(wait)),
            }
        }
        Command::SendMedia { to, file, caption, wait, timeout, retries } => {
            let (phone, key) = profile.account(&cli.profile)?;
            let media = media_client(cli.media.as_deref(), &profile, server, &ca, &phone, &key)?;
            let limit = Duration::from_secs(timeout);
            let sending = async {
                // Connect first: a broker too old for media messages is told before uploading.
                let mut client = Client::connect(&opts).await?;
                let version = client.version();
                if version < 3 {
                    client.close().await;
                    bail!("the broker speaks protocol version {version}; media messages need version 3");
                }
                client.login(&phone, &key).await?;
                let message = match media.prepare(&file, caption).await {
                    Ok(m) => m,
                    Err(e) => {
                        client.close().await;
                        return Err(e).with_context(|| format!("uploading {}", file.display()));
                    }
                };
                let result = send(&mut client, &to, message.kind(), message.to_body(), wait, retries).await;
                client.close().await;
                result
            };
            match tokio::time::timeout(limit, sending).await {
                Ok(r) => r,
                Err(_) => bail!("timed out after {timeout} s uploading or waiting for the message to be {}", wait_name(wait)),
            }
        }
        Command::Fetch { url, output, sha256 } => {
            let (phone, key) = profile.account(&cli.profile)?;
            let media = media_client(cli.media.as_deref(), &profile, server, &ca, &phone, &key)?;
            let (size, hash) = media.fetch(&url, sha256.as_deref(), &output).await?;
            println!("saved {} ({size} bytes, sha256 {hash})", output.display());
            Ok(())
        }
        Command::Group { command } => {
            let (name, args) = match command {
                GroupCommand::Create { name } => ("group-create", vec![name]),
                GroupCommand::Add { name, phone } => ("group-add", vec![name, phone]),
                GroupCommand::Remove { name, phone } => ("group-remove", vec![name, phone]),
                GroupCommand::Members { name } => ("group-members", vec![name]),
            };
            plugin_command(&cli.profile, &profile, &opts, "router", name, args).await
        }
        Command::Command { slot, name, args } => plugin_command(&cli.profile, &profile, &opts, &slot, &name, args).await,
        Command::PushToken { token, clear: _ } => {
            let (phone, key) = profile.account(&cli.profile)?;
            let mut client = Client::connect(&opts).await?;
            let version = client.version();
            if version < 4 {
                client.close().await;
                bail!("the broker speaks protocol version {version}; push tokens need version 4");
            }
            client.login(&phone, &key).await?;
            // Items pushed meanwhile are not acknowledged: they stay queued for `listen`.
            let token = token.unwrap_or_default();
            let result = client.set_push_token(&token).await;
            client.close().await;
            result?;
            if token.is_empty() {
                println!("push token of {phone} removed");
            } else {
                println!("push token of {phone} set ({} bytes)", token.len());
            }
            Ok(())
        }
        Command::Listen { count, timeout, read } => {
            let (phone, key) = profile.account(&cli.profile)?;
            let mut client = Client::connect(&opts).await?;
            client.login(&phone, &key).await?;
            let mut seen = 0usize;
            let listening = listen(&mut client, count, read, &mut seen);
            let result = match timeout {
                Some(secs) => tokio::time::timeout(Duration::from_secs(secs), listening).await.ok(),
                None => Some(listening.await),
            };
            client.close().await;
            match (result, count) {
                (Some(r), _) => r,
                (None, Some(n)) if seen < n => bail!("timed out after {seen} of {n} events"),
                (None, _) => Ok(()),
            }
        }
    }
}

/// The media server client for this profile: `--media` (or `HOTLINE_MEDIA`), else the
/// profile's, else the broker's host on port 4443.
fn media_client(media: Option<&str>, profile: &Profile, server: SocketAddr, ca: &Path, phone: &str, key: &str) -> Result<MediaClient> {
    let base = media.map(str::to_string).or(profile.media.clone()).unwrap_or_else(|| media::default_media_url(server));
    Ok(MediaClient::new(&base, ca, phone, key)?)
}

/// Runs one plugin command and prints its output; a refusal is an error (exit 1).
async fn plugin_command(dir: &Path, profile: &Profile, opts: &ConnectOptions, slot: &str, name: &str, args: Vec<String>) -> Result<()> {
    let (phone, key) = profile.account(dir)?;
    let mut client = Client::connect(opts).await?;
    client.login(&phone, &key).await?;
    let (answer, _) = client.command(slot, name, args).await?;
    client.close().await;
    match answer {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            Ok(())
        }
        Err(error) => bail!("{error}"),
    }
}

fn wait_name(wait: Wait) -> &'static str {
    match wait {
        Wait::Sent => "sent",
        Wait::Delivered => "delivered",
        Wait::Read => "read",
    }
}

/// The wait before retry number `retry` (1, 2, …): 0.5 s, doubling, at most 8 s.
fn backoff(retry: u32) -> Duration {
    Duration::from_millis(500u64 << (retry - 1).min(4))
}

/// Sends and waits for the wanted state. A retryable refusal (`ErrorCode::is_retryable`:
/// Retryable, RateLimited, QueueFull) is sent again with the same
/// client id (the broker stores a message once per client id), up to `retries` times. Acks
/// only the receipts for this message; other items stay queued for `listen`.
async fn send(client: &mut Client, to: &str, kind: MessageKind, body: Vec<u8>, wait: Wait, retries: u32) -> Result<()> {
    let client_id: u64 = rand::random();
    // `Send` for text (every protocol version has it), `SendTyped` for other kinds.
    let send_once = async |client: &mut Client| match &kind {
        MessageKind::Text => client.send_with_id(client_id, to, body.clone()).await,
        kind => client.send_typed_with_id(client_id, to, kind.clone(), body.clone()).await,
    };
    send_once(client).await?;
    let mut attempt = 1;
    let mut id = None;
    loop {
        match client.next_frame().await? {
            ServerFrame::Sent { client_id: c, id: message_id } if c == client_id => {
                println!("{message_id}");
                if wait == Wait::Sent {
                    return Ok(());
                }
                id = Some(message_id);
            }
            // Retryable, and a full queue (QueueFull; RateLimited from an older broker).
            ServerFrame::SendFailed { client_id: c, error, reason } if c == client_id && error.is_retryable() && attempt <= retries => {
                let pause = backoff(attempt);
                eprintln!("attempt {attempt} of {} refused ({error:?}): {reason}; retrying in {pause:?}", retries + 1);
                tokio::time::sleep(pause).await;
                attempt += 1;
                send_once(client).await?;
            }
            ServerFrame::SendFailed { client_id: c, error, reason } if c == client_id && error.is_retryable() => {
                bail!("not sent after {attempt} attempts ({error:?}): {reason}; try again later")
            }
            ServerFrame::SendFailed { client_id: c, error, reason } if c == client_id => {
                bail!("not sent ({error:?}): {reason}")
            }
            ServerFrame::Receipt { id: receipt_id, message_id, status, .. } if Some(message_id) == id => {
                client.ack(receipt_id).await?;
                let reached = match status {
                    ReceiptStatus::Delivered => Wait::Delivered,
                    ReceiptStatus::Read => Wait::Read,
                };
                if reached >= wait {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

/// Adds a media message's fields to its `listen` event: url, size, sha256, name, caption,
/// width, height, and the thumbnail as its size in bytes and pixels (not its Base64), in
/// place of the raw `text`; or a `media_error` (keeping `text`) if the body is not a media
/// message (docs/protocol.md §11).
fn add_media_fields(event: &mut serde_json::Value, body: &[u8]) {
    let message = match MediaMessage::from_body(body) {
        Ok(m) => m,
        Err(e) => {
            event["media_error"] = json!(e.to_string());
            return;
        }
    };
    let thumbnail = match message.thumbnail_jpeg() {
        Ok(None) => serde_json::Value::Null,
        Ok(Some(jpeg)) => match media::decode_thumbnail(&jpeg) {
            Ok((w, h)) => json!({"bytes": jpeg.len(), "width": w, "height": h}),
            Err(e) => json!({"bytes": jpeg.len(), "error": e}),
        },
        Err(e) => json!({"error": e.to_string()}),
    };
    let map = event.as_object_mut().expect("an event is an object");
    map.remove("text");
    if map.get("mime").and_then(|m| m.as_str()) != Some(message.mime.as_str()) {
        map.insert("media_mime".into(), json!(message.mime));
    }
    for (key, value) in [
        ("url", json!(message.url)),
        ("size", json!(message.size)),
        ("sha256", json!(message.sha256)),
        ("name", json!(message.name)),
        ("caption", json!(message.caption)),
        ("width", json!(message.width)),
        ("height", json!(message.height)),
        ("thumbnail", thumbnail),
    ] {
        map.insert(key.into(), value);
    }
}

async fn listen(client: &mut Client, count: Option<usize>, read: bool, seen: &mut usize) -> Result<()> {
    while count.is_none_or(|n| *seen < n) {
        let frame = match ReceivedMessage::from_frame(client.next_frame().await?) {
            Ok(ReceivedMessage { id, from, sent_at_ms, kind, body }) => {
                client.ack(id).await?;
                if read {
                    client.read(id, &from).await?;
                }
                let mut event = json!({"type": "message", "id": id, "from": from, "text": String::from_utf8_lossy(&body), "sent_at_ms": sent_at_ms});
                match kind {
                    MessageKind::Text => event["kind"] = json!("text"),
                    MessageKind::Media { mime } => {
                        event["kind"] = json!("media");
                        event["mime"] = json!(mime);
                        add_media_fields(&mut event, &body);
                    }
                }
                println!("{event}");
                *seen += 1;
                continue;
            }
            Err(frame) => frame,
        };
        let event = match frame {
            ServerFrame::Receipt { id, message_id, by, status, at_ms } => {
                client.ack(id).await?;
                json!({"type": "receipt", "id": message_id, "status": status.as_str(), "by": by, "at_ms": at_ms})
            }
            ServerFrame::Error { error, reason } => {
                eprintln!("broker error {error:?}: {reason}");
                continue;
            }
            _ => continue,
        };
        println!("{event}");
        *seen += 1;
    }
    Ok(())
}
