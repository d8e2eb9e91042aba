//! The NATS connection flags (credentials, TLS), defined once for `cnlink proc --sink-*` and `cnlink collect`.

use std::path::PathBuf;

use cnlink_sink::publish::{Auth, ConnectConfig, Tls};

/// Credentials and TLS for NATS servers, whichever flags they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NatsAccess {
    pub(crate) creds: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) tls: bool,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
}

impl NatsAccess {
    /// The servers of `urls` (`nats://h1:4222,h2:4222`, `tls://...`) with these credentials.
    pub(crate) fn connect_config(&self, urls: &str) -> anyhow::Result<ConnectConfig> {
        let mut config = ConnectConfig::parse(urls).map_err(anyhow::Error::msg)?;
        config.auth = match (&self.creds, &self.user, &self.password, &self.token) {
            (Some(file), None, None, None) => Auth::CredentialsFile(file.clone()),
            (None, Some(user), Some(password), None) => {
                Auth::UserPassword { user: user.clone(), password: password.clone() }
            }
            (None, None, None, Some(token)) => Auth::Token(token.clone()),
            (None, None, None, None) => Auth::None,
            // clap's conflicts and requirements keep these out; a message all the same.
            _ => anyhow::bail!("give one of: a credentials file, a user with a password, or a token"),
        };
        config.tls = Tls {
            required: self.tls,
            ca: self.tls_ca.clone(),
            client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
        };
        Ok(config)
    }
}

/// Defines a clap struct of the NATS connection flags, each long name starting with `$prefix`, and its
/// conversion to [`NatsAccess`]. The argument ids (`nats_creds`, ...) are the same in every instance.
macro_rules! nats_flags {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
        pub(crate) struct $name {
            /// A NATS credentials file (JWT and NKey seed).
            #[arg(long = concat!($prefix, "creds"), value_name = "FILE",
                  conflicts_with_all = ["nats_user", "nats_token"])]
            nats_creds: Option<std::path::PathBuf>,
            /// A user name (with its password).
            #[arg(long = concat!($prefix, "user"), value_name = "USER", requires = "nats_password",
                  conflicts_with = "nats_token")]
            nats_user: Option<String>,
            /// The user's password (better in the configuration file than on a command line others can read).
            #[arg(long = concat!($prefix, "password"), value_name = "PASSWORD", requires = "nats_user")]
            nats_password: Option<String>,
            /// A token.
            #[arg(long = concat!($prefix, "token"), value_name = "TOKEN")]
            nats_token: Option<String>,
            /// Require TLS (tls:// URLs require it too).
            #[arg(long = concat!($prefix, "tls"))]
            nats_tls: bool,
            /// CA certificates (PEM) to trust besides the system's.
            #[arg(long = concat!($prefix, "tls-ca"), value_name = "FILE")]
            nats_tls_ca: Option<std::path::PathBuf>,
            /// A client certificate (PEM) for servers that verify clients (with its key).
            #[arg(long = concat!($prefix, "tls-cert"), value_name = "FILE", requires = "nats_tls_key")]
            nats_tls_cert: Option<std::path::PathBuf>,
            /// The client certificate's key (PEM).
            #[arg(long = concat!($prefix, "tls-key"), value_name = "FILE", requires = "nats_tls_cert")]
            nats_tls_key: Option<std::path::PathBuf>,
        }

        impl $name {
            /// The credentials and TLS settings given.
            pub(crate) fn access(&self) -> $crate::sink::nats_flags::NatsAccess {
                $crate::sink::nats_flags::NatsAccess {
                    creds: self.nats_creds.clone(),
                    user: self.nats_user.clone(),
                    password: self.nats_password.clone(),
                    token: self.nats_token.clone(),
                    tls: self.nats_tls,
                    tls_ca: self.nats_tls_ca.clone(),
                    tls_cert: self.nats_tls_cert.clone(),
                    tls_key: self.nats_tls_key.clone(),
                }
            }
        }
    };
}

nats_flags!(
    /// `cnlink proc`'s sink credentials: `--sink-creds`, `--sink-user`, `--sink-password`, `--sink-token`,
    /// `--sink-tls`, `--sink-tls-ca`, `--sink-tls-cert`, `--sink-tls-key` (`creds`, ... in `[proc.sink]`).
    SinkNatsFlags,
    "sink-"
);

nats_flags!(
    /// `cnlink collect`'s credentials: `--creds`, `--user`, `--password`, `--token`, `--tls`, `--tls-ca`,
    /// `--tls-cert`, `--tls-key`.
    NatsFlags,
    ""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_becomes_auth_and_tls() {
        let plain = NatsAccess::default().connect_config("127.0.0.1:4222").unwrap();
        assert_eq!((plain.auth, plain.tls), (Auth::None, Tls::default()));
        let access = NatsAccess {
            user: Some("u".into()),
            password: Some("p".into()),
            tls_ca: Some("/ca.pem".into()),
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            ..Default::default()
        };
        let config = access.connect_config("tls://h:1").unwrap();
        assert_eq!(config.auth, Auth::UserPassword { user: "u".into(), password: "p".into() });
        assert_eq!(config.tls.client_cert, Some(("/c.pem".into(), "/k.pem".into())));
        let both = NatsAccess { token: Some("t".into()), creds: Some("/x.creds".into()), ..Default::default() };
        assert!(both.connect_config("h:1").is_err());
        assert!(NatsAccess::default().connect_config("http://h:1").is_err());
    }
}
