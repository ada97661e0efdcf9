//! NATS JetStream messaging: the app publishes every stored item, the worker
//! consumes them with a durable consumer (seed 002's broker and worker).
//!
//! The stream `ITEMS` keeps messages in files on the broker's volume, so they
//! survive a broker restart; a write is acknowledged to the client only after
//! JetStream acknowledged the message. The worker acks a message after it stored
//! the item durably, so a killed worker re-reads what it had not finished.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

/// Stream name.
pub const STREAM: &str = "ITEMS";
/// Subject items are published on.
pub const SUBJECT: &str = "items.created";
/// Durable consumer name of the worker.
pub const CONSUMER: &str = "worker";

/// A broker error, as text (async-nats has many error types).
pub type BrokerError = String;

/// A lazily connected JetStream context with the stream ensured.
pub struct Broker {
    url: String,
    ctx: OnceCell<jetstream::Context>,
}

impl Broker {
    /// Remembers the URL; connects on first use.
    pub fn new(url: String) -> Self {
        Broker {
            url,
            ctx: OnceCell::new(),
        }
    }

    /// The JetStream context, connecting and creating the stream if needed.
    pub async fn context(&self) -> Result<&jetstream::Context, BrokerError> {
        self.ctx
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .retry_on_initial_connect()
                    .connect(&self.url)
                    .await
                    .map_err(|e| format!("connecting to {}: {e}", self.url))?;
                let js = jetstream::new(client);
                tokio::time::timeout(
                    Duration::from_secs(5),
                    js.get_or_create_stream(stream::Config {
                        name: STREAM.into(),
                        subjects: vec!["items.>".into()],
                        storage: stream::StorageType::File,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|_| format!("creating stream {STREAM}: timed out"))?
                .map_err(|e| format!("creating stream {STREAM}: {e}"))?;
                Ok(js)
            })
            .await
    }

    /// Publishes and waits for JetStream's acknowledgement (the message is stored).
    pub async fn publish(&self, payload: Vec<u8>) -> Result<(), BrokerError> {
        let js = self.context().await?;
        let ack = js
            .publish(SUBJECT, payload.into())
            .await
            .map_err(|e| format!("publish: {e}"))?;
        tokio::time::timeout(Duration::from_secs(5), ack)
            .await
            .map_err(|_| "publish: no ack from JetStream within 5s".to_string())?
            .map_err(|e| format!("publish ack: {e}"))?;
        Ok(())
    }

    /// Whether the broker answers (used by readiness).
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let js = tokio::time::timeout(Duration::from_secs(2), self.context())
            .await
            .map_err(|_| "broker: not connected yet".to_string())??;
        // A round trip to the server (PING/PONG), not just the local connection state.
        tokio::time::timeout(Duration::from_secs(2), js.client().flush())
            .await
            .map_err(|_| "broker: no answer within 2s".to_string())?
            .map_err(|e| format!("broker: {e}"))?;
        Ok(())
    }

    /// Consumes the stream forever with the durable consumer, calling `handle` for
    /// each message and acking it only when `handle` succeeded.
    pub async fn consume<F, Fut>(&self, handle: F)
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        loop {
            if let Err(e) = self.consume_once(&handle).await {
                eprintln!("demo-app: worker: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    async fn consume_once<F, Fut>(&self, handle: &F) -> Result<(), BrokerError>
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let js = self.context().await?;
        let stream = js
            .get_stream(STREAM)
            .await
            .map_err(|e| format!("stream {STREAM}: {e}"))?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_wait: Duration::from_secs(5),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {CONSUMER}: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("consumer {CONSUMER}: {e}"))?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| format!("receive: {e}"))?;
            match handle(msg.payload.to_vec()).await {
                Ok(()) => msg.ack().await.map_err(|e| format!("ack: {e}"))?,
                Err(e) => eprintln!("demo-app: worker: not acked ({e}); redelivered later"),
            }
        }
        Err("message stream ended".into())
    }
}
