//! One client connection to the NATS cluster and the JetStream context every
//! other module works through.

use std::time::Duration;

use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, ServerAddr};

use crate::Error;

/// How long one TCP + TLS + NATS handshake may take before the client tries
/// the next server of the list: a loopback or LAN server answers in
/// milliseconds, a dead one must not hold a start for long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one JetStream request (a publish ack, a stream create, a get)
/// waits before it counts as failed and is retried by the caller. 2 s, as
/// measured in docs/cluster.md: an ack normally takes < 5 ms; during a
/// leader election the request in flight times out here and is retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many publishes of one node wait for their ack at once
/// (`cluster.publish_inflight`, §3.1); beyond it a publish waits for a slot,
/// the same back-pressure as the one-node writer queue.
pub const PUBLISH_INFLIGHT_MAX: usize = 4_096;

/// Delay between reconnect attempts after the connection dropped: short,
/// because the other servers of the list are normally up.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// How Kairos reaches the NATS cluster (what `[cluster]` will hold).
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// Client URLs of the servers (`nats://host:port`); any one reachable
    /// server is enough, the client learns the others and fails over.
    pub servers: Vec<String>,
    /// The connection's name as `nats-server` shows it (monitoring).
    pub name: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub publish_inflight_max: usize,
}

impl ConnectConfig {
    /// The defaults above for these servers.
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ConnectConfig {
            servers: servers.into_iter().map(Into::into).collect(),
            name: "kairos".to_string(),
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            publish_inflight_max: PUBLISH_INFLIGHT_MAX,
        }
    }

    fn addresses(&self) -> Result<Vec<ServerAddr>, Error> {
        if self.servers.is_empty() {
            return Err(Error::Config(
                "cluster.servers is empty: list at least one nats://host:port".into(),
            ));
        }
        self.servers
            .iter()
            .map(|url| {
                url.parse::<ServerAddr>().map_err(|error| {
                    Error::Config(format!(
                        "cluster.servers: {url:?} is not a NATS URL ({error}); write nats://host:port"
                    ))
                })
            })
            .collect()
    }
}

/// A connected client and its JetStream context.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub client: Client,
    pub jetstream: Context,
}

/// Connects to the first reachable server of the list. Afterwards the
/// client reconnects forever (to any server it knows) when a connection
/// drops: a node must outlive the death of the server it was talking to.
pub async fn connect(config: &ConnectConfig) -> Result<Cluster, Error> {
    let addresses = config.addresses()?;
    let client = ConnectOptions::new()
        .name(&config.name)
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .max_reconnects(None)
        .reconnect_delay_callback(|_attempt| RECONNECT_DELAY)
        .connect(addresses)
        .await
        .map_err(|error| Error::Connect {
            servers: config.servers.join(","),
            detail: error.to_string(),
        })?;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(config.request_timeout)
        .max_ack_inflight(config.publish_inflight_max)
        .backpressure_on_inflight(true)
        .build(client.clone());
    Ok(Cluster { client, jetstream })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked_before_connecting() {
        let empty = ConnectConfig::new(Vec::<String>::new());
        assert!(
            matches!(empty.addresses(), Err(Error::Config(message)) if message.contains("at least one"))
        );
        let bad = ConnectConfig::new(["nats://127.0.0.1:4222", "http://[::1"]);
        assert!(
            matches!(bad.addresses(), Err(Error::Config(message)) if message.contains("http://[::1"))
        );
        let good = ConnectConfig::new(["nats://127.0.0.1:4222", "127.0.0.1:4223"]);
        assert_eq!(good.addresses().unwrap().len(), 2);
    }
}
