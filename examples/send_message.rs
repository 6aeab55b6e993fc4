//! The seed design's `main`, in Rust: a config, a producer, one message.
//!
//! ```sh
//! cargo run --release -- broker &          # or any Kafka broker
//! cargo run --example send_message -- localhost:9092 greetings "hello, kafka"
//! ```

use minikafka::producer::{Acks, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let bootstrap_servers = args.next().unwrap_or_else(|| "localhost:9092".into());
    let topic = args.next().unwrap_or_else(|| "greetings".into());
    let message = args.next().unwrap_or_else(|| "hello from minikafka".into());

    let config = ProducerConfig {
        bootstrap_servers,
        acks: Acks::All,
        ..ProducerConfig::default()
    };
    let producer = match Producer::new(config).await {
        Ok(producer) => producer,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect");
            return std::process::ExitCode::FAILURE;
        }
    };
    let record = ProducerRecord::new(topic.clone(), Some("example"), message);
    let delivery = producer.send(record).await;
    let outcome = delivery.await;
    producer.close().await;
    match outcome {
        Ok(meta) => {
            tracing::info!(
                topic,
                partition = meta.partition,
                offset = meta.offset,
                "message delivered"
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(topic, error = %e, "message not delivered");
            std::process::ExitCode::FAILURE
        }
    }
}
