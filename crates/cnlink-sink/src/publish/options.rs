//! Connection, stream and publisher settings, and connecting.

use std::path::PathBuf;
use std::time::Duration;

/// How to authenticate to the servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A NATS credentials file (JWT and NKey seed).
    CredentialsFile(PathBuf),
    /// A user name and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
}

/// TLS settings (rustls; the system roots are trusted as well as `ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Require TLS even if the server does not ask for it (`tls://` URLs require it too).
    pub required: bool,
    /// A PEM file of CA certificates to trust.
    pub ca: Option<PathBuf>,
    /// A PEM client certificate and its key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    /// Server URLs (`nats://host:port` or `tls://host:port`); the client picks one and fails over.
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// How long one connection attempt may take (default 5 s).
    pub connect_timeout: Duration,
    /// The client name the server shows (default `cnlink`).
    pub name: String,
}

impl ConnectConfig {
    /// Servers from a list such as `nats://h1:4222,h2:4222` (a missing scheme means `nats://`).
    pub fn parse(servers: &str) -> Result<ConnectConfig, String> {
        let mut list = Vec::new();
        let mut scheme = "nats://";
        for (i, item) in servers.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                return Err(format!("server list {servers:?}: empty entry"));
            }
            let (item_scheme, rest) = match item.split_once("://") {
                Some((s, rest)) => (format!("{s}://"), rest),
                None => (scheme.to_owned(), item),
            };
            if !["nats://", "tls://"].contains(&item_scheme.as_str()) {
                return Err(format!("server {item:?}: only nats:// and tls:// are supported"));
            }
            if i == 0 && item_scheme == "tls://" {
                scheme = "tls://";
            }
            let Some((host, port)) = rest.rsplit_once(':') else {
                return Err(format!("server {item:?}: expected HOST:PORT"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("server {item:?}: expected HOST:PORT"));
            }
            list.push(format!("{item_scheme}{rest}"));
        }
        Ok(ConnectConfig {
            servers: list,
            auth: Auth::None,
            tls: Tls::default(),
            connect_timeout: Duration::from_secs(5),
            name: "cnlink".into(),
        })
    }

    /// The servers joined for messages: `nats://h1:4222,nats://h2:4222`.
    pub fn servers_text(&self) -> String {
        self.servers.join(",")
    }

    /// Connects once (the client then reconnects by itself, forever).
    pub(crate) async fn connect(&self) -> Result<async_nats::Client, String> {
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(self.connect_timeout)
            .max_reconnects(None::<usize>)
            // The session makes the subjects and checks each once (see `session::Ids`), not once per message.
            .skip_subject_validation(true)
            .reconnect_delay_callback(|attempts| Duration::from_millis((50u64 << attempts.min(6)).min(2000)));
        options = match &self.auth {
            Auth::None => options,
            Auth::CredentialsFile(path) => {
                options.credentials_file(path).await.map_err(|e| format!("credentials file {}: {e}", path.display()))?
            }
            Auth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
            Auth::Token(token) => options.token(token.clone()),
        };
        if self.tls.required || self.servers.iter().any(|s| s.starts_with("tls://")) {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options.connect(&self.servers).await.map_err(|e| format!("cannot connect to {}: {e}", self.servers_text()))
    }
}

/// The JetStream stream the sink publishes to (created if missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The stream's name (default `CNLINK`).
    pub name: String,
    /// Its subjects are `PREFIX.>` (default prefix `cnlink`).
    pub subject_prefix: String,
    /// The most bytes it keeps (-1: no limit, the default).
    pub max_bytes: i64,
    /// The most messages it keeps (-1: no limit, the default).
    pub max_msgs: i64,
    /// The longest it keeps a message (zero: forever, the default).
    pub max_age: Duration,
    /// The server's deduplication window for `Nats-Msg-Id` (default 2 minutes): repeats within it are
    /// dropped by the server. Keep it longer than the longest outage after which a spool is replayed.
    pub duplicate_window: Duration,
    /// Replicas (1, or 3 in a cluster).
    pub replicas: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: "CNLINK".into(),
            subject_prefix: "cnlink".into(),
            max_bytes: -1,
            max_msgs: -1,
            max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

impl StreamConfig {
    /// The subject filter of the stream: `PREFIX.>`.
    pub fn subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// Everything the publisher needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    /// Where and how to connect.
    pub connect: ConnectConfig,
    /// The stream.
    pub stream: StreamConfig,
    /// Publishes in flight at most (default 256).
    pub window: usize,
    /// How long to wait for one publish's acknowledgement before publishing again from the cursor (default
    /// 5 s).
    pub ack_timeout: Duration,
    /// The longest pause between attempts after a failure (default 5 s; it starts at 100 ms and doubles).
    pub max_backoff: Duration,
    /// Once caught up, how long to let new records gather before publishing them (default 5 ms): fewer,
    /// fuller rounds of publishes and acks, for that much latency.
    pub linger: Duration,
}

impl PublishConfig {
    /// The defaults for these servers.
    pub fn new(connect: ConnectConfig) -> Self {
        PublishConfig {
            connect,
            stream: StreamConfig::default(),
            window: 256,
            ack_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            linger: Duration::from_millis(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse() {
        let config = ConnectConfig::parse("nats://127.0.0.1:4222, 127.0.0.1:4223").unwrap();
        assert_eq!(config.servers, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
        let config = ConnectConfig::parse("tls://a:1,b:2").unwrap();
        assert_eq!(config.servers, ["tls://a:1", "tls://b:2"]);
        for bad in ["", "nats://a", "http://a:1", "a:x", "a:1,,b:2", ":4222"] {
            assert!(ConnectConfig::parse(bad).is_err(), "{bad:?}");
        }
    }
}
