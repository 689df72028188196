//! Two consumers of one group against a running broker: the second join rebalances the
//! group, and the range assignor splits the partitions between them.
//!
//! ```text
//! cargo run -p skiff-client --example group_rebalance -- [bootstrap=127.0.0.1:9092] [topic=rebalance]
//! ```

use std::time::Duration;

use skiff_client::{
    Admin, AdminError, ClientConfig, Consumer, ConsumerConfig, GroupConfig, TopicPartition,
};

/// Partitions of the topic.
const PARTITIONS: i32 = 4;
/// Polls each consumer makes before giving up.
const POLLS_MAX: usize = 100;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let arguments: Vec<String> = std::env::args().collect();
    let bootstrap = arguments
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let topic = arguments
        .get(2)
        .cloned()
        .unwrap_or_else(|| "rebalance".to_string());
    let client = ClientConfig::new([bootstrap]);
    let admin = Admin::connect(client.clone())
        .await
        .expect("admin connects");
    match admin.create_topic(&topic, PARTITIONS, 1).await {
        Ok(()) | Err(AdminError::TopicAlreadyExists { .. }) => {}
        Err(error) => panic!("create topic: {error}"),
    }
    admin
        .wait_for_leaders(&topic, Duration::from_secs(10))
        .await
        .expect("leaders");
    let config = ConsumerConfig {
        group: Some(GroupConfig::new(&format!("{topic}-group"))),
        ..ConsumerConfig::default()
    };
    let mut tasks = Vec::new();
    for index in 0..2 {
        // Each consumer has its own connections, as separate processes would.
        let mut consumer = Consumer::connect(client.clone(), config.clone())
            .await
            .expect("consumer connects");
        consumer
            .subscribe(vec![topic.clone()])
            .expect("has a group");
        tasks.push(tokio::spawn(async move {
            let mut last: Vec<TopicPartition> = Vec::new();
            for _ in 0..POLLS_MAX {
                consumer
                    .poll(Duration::from_millis(200))
                    .await
                    .expect("polls");
                last = consumer.assignment();
                if last.len() < PARTITIONS as usize && consumer.generation() >= Some(2) {
                    break;
                }
            }
            let events = consumer.drain_events();
            println!(
                "consumer {index}: generation {:?}, member {:?}, assignment {last:?}, events {events:?}",
                consumer.generation(),
                consumer.member_id(),
            );
            (consumer, last)
        }));
    }
    let mut total = 0;
    let mut consumers = Vec::new();
    for task in tasks {
        let (consumer, assignment) = task.await.expect("task completes");
        total += assignment.len();
        consumers.push(consumer);
    }
    for consumer in consumers {
        consumer.close().await;
    }
    println!("partitions assigned in total: {total} of {PARTITIONS}");
    assert_eq!(total, PARTITIONS as usize, "every partition has one owner");
}
