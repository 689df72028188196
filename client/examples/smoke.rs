//! Smoke test against a running broker: create a topic, produce N records, read them back
//! with an assigned consumer and with a group consumer, and print a summary.
//!
//! ```text
//! cargo run -p skiff-client --example smoke -- [bootstrap=127.0.0.1:9092] [records=1000] [topic=smoke]
//! ```
//!
//! For example, against a single `skiff --data-dir /tmp/data --listeners 127.0.0.1:19092`:
//!
//! ```text
//! topic smoke: 3 partitions ready
//! produced 1001 records in 56ms; keyed record at smoke-0@400
//! assigned consumer read 1001 of 1001 records
//! group consumer read 1001 records in generation Some(1), assignment [...]; committed
//! smoke: OK
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use skiff_client::{
    Admin, AdminError, ClientConfig, Consumer, ConsumerConfig, GroupConfig, Producer,
    ProducerConfig,
};

/// Partitions of the smoke topic.
const PARTITIONS: i32 = 3;
/// Records per `send_batch` call.
const BATCH_RECORDS: usize = 100;
/// Longest time spent reading back.
const CONSUME_DEADLINE_MS: u64 = 30_000;

#[tokio::main]
async fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let bootstrap = arguments
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let record_count: usize = arguments
        .get(2)
        .map(|count| count.parse().expect("record count is a number"))
        .unwrap_or(1_000);
    let topic = arguments
        .get(3)
        .cloned()
        .unwrap_or_else(|| "smoke".to_string());
    match run(&bootstrap, record_count, &topic).await {
        Ok(()) => println!("smoke: OK"),
        Err(message) => {
            eprintln!("smoke: FAILED: {message}");
            std::process::exit(1);
        }
    }
}

async fn run(bootstrap: &str, record_count: usize, topic: &str) -> Result<(), String> {
    let client = ClientConfig::new([bootstrap]);
    let admin = Admin::connect(client.clone())
        .await
        .map_err(|error| error.to_string())?;
    match admin.create_topic(topic, PARTITIONS, 1).await {
        Ok(()) | Err(AdminError::TopicAlreadyExists { .. }) => {}
        Err(error) => return Err(format!("create topic: {error}")),
    }
    admin
        .wait_for_leaders(topic, Duration::from_secs(10))
        .await
        .map_err(|error| error.to_string())?;
    println!("topic {topic}: {PARTITIONS} partitions ready");

    let producer = Producer::new(admin.cluster().clone(), ProducerConfig::default())
        .await
        .map_err(|error| format!("producer: {error}"))?;
    let started = tokio::time::Instant::now();
    let mut written = BTreeSet::new();
    let mut next = 0;
    while next < record_count {
        let end = (next + BATCH_RECORDS).min(record_count);
        let partition = (next / BATCH_RECORDS) as i32 % PARTITIONS;
        let records = (next..end)
            .map(|index| {
                (
                    Some(Bytes::from(format!("key-{index}"))),
                    Some(Bytes::from(format!("value-{index}"))),
                )
            })
            .collect();
        producer
            .send_batch(topic, partition, records)
            .await
            .map_err(|error| format!("send_batch: {error}"))?;
        written.extend((next..end).map(|index| format!("value-{index}")));
        next = end;
    }
    let keyed = producer
        .send(
            topic,
            None,
            Some(Bytes::from("smoke-key")),
            Some(Bytes::from("keyed")),
        )
        .await
        .map_err(|error| format!("send: {error}"))?;
    written.insert("keyed".to_string());
    println!(
        "produced {} records in {:?}; keyed record at {}-{}@{}",
        written.len(),
        started.elapsed(),
        keyed.topic,
        keyed.partition,
        keyed.offset
    );

    let mut assigned = Consumer::new(admin.cluster().clone(), ConsumerConfig::default());
    assigned.assign(
        (0..PARTITIONS)
            .map(|partition| (topic.to_string(), partition))
            .collect(),
    );
    let read = read_values(&mut assigned, &written).await?;
    println!(
        "assigned consumer read {} of {} records",
        read.len(),
        written.len()
    );

    let group_id = format!("{topic}-smoke-group");
    let mut member = Consumer::new(
        admin.cluster().clone(),
        ConsumerConfig {
            group: Some(GroupConfig::new(&group_id)),
            ..ConsumerConfig::default()
        },
    );
    member
        .subscribe(vec![topic.to_string()])
        .map_err(|error| error.to_string())?;
    let read = read_values(&mut member, &written).await?;
    member
        .commit()
        .await
        .map_err(|error| format!("commit: {error}"))?;
    println!(
        "group consumer read {} records in generation {:?}, assignment {:?}; committed",
        read.len(),
        member.generation(),
        member.assignment()
    );
    member.close().await;
    Ok(())
}

async fn read_values(
    consumer: &mut Consumer,
    expected: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CONSUME_DEADLINE_MS);
    let mut read = BTreeSet::new();
    while !expected.is_subset(&read) {
        if tokio::time::Instant::now() >= deadline {
            let missing = expected.difference(&read).count();
            return Err(format!(
                "{missing} records not read back before the deadline"
            ));
        }
        let records = consumer
            .poll(Duration::from_millis(500))
            .await
            .map_err(|error| format!("poll: {error}"))?;
        read.extend(
            records
                .iter()
                .filter_map(|record| record.value.as_ref())
                .map(|value| String::from_utf8_lossy(value).into_owned()),
        );
    }
    Ok(read)
}
