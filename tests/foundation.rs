//! The ground every service stands on: migrations on real Postgres, messages through the real
//! broker.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use csvbus_shared::imports::ImportStatus;
use csvbus_tests::{brokers, kafka::read_topic, unique, TestDb};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::test]
async fn migrations_apply_once_when_two_services_start_together() {
    let db = TestDb::empty().await;
    let other = csvbus_shared::db::connect(&db.url, 2, &Default::default())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        csvbus_shared::db::migrate(&db.pool),
        csvbus_shared::db::migrate(&other)
    );
    a.unwrap();
    b.unwrap();
    // And again, later: nothing to do.
    csvbus_shared::db::migrate(&db.pool).await.unwrap();

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, csvbus_shared::db::MIGRATOR.iter().count());
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'csvbus' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "dead_letters",
            "deliveries",
            "import_partitions",
            "imports",
            "rejected_rows",
            "sink_offsets"
        ]
    );

    // The state round-trips through real Postgres.
    let id = uuid::Uuid::now_v7();
    let t = csvbus_shared::catalog::TableName::parse("public.t", "public").unwrap();
    let cols = ["a".to_owned()];
    let mut conn = db.pool.acquire().await.unwrap();
    let new = csvbus_shared::imports::NewImport::append(id, &t, &cols);
    csvbus_shared::imports::create(&mut conn, &new)
        .await
        .unwrap();
    let rec = csvbus_shared::imports::get(&db.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.table.as_str(), rec.status.as_str()),
        ("public.t", "receiving")
    );

    // A late progress tick does not overwrite the final counters.
    let counters = |n| csvbus_shared::imports::UploadCounters {
        rows_received: n,
        rows_produced: n,
        rows_rejected: 0,
        bytes_received: n * 10,
        acked: Default::default(),
    };
    let finished = csvbus_shared::imports::upload::finish(
        &db.pool,
        id,
        1,
        ImportStatus::Produced,
        &counters(10),
        None,
    )
    .await
    .unwrap();
    assert!(finished);
    csvbus_shared::imports::update_progress(&db.pool, id, 1, &counters(5))
        .await
        .unwrap();
    let rec = csvbus_shared::imports::get(&db.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.status.as_str(), rec.rows_produced), ("produced", 10));
}

#[tokio::test]
async fn messages_round_trip_through_the_broker_process() {
    let topic = unique("foundation");
    csvbus_shared::kafka::ensure_topic(&csvbus_shared::kafka::client_config(&brokers()), &topic, 3)
        .await
        .unwrap();
    // Creating it again is fine.
    csvbus_shared::kafka::ensure_topic(&csvbus_shared::kafka::client_config(&brokers()), &topic, 3)
        .await
        .unwrap();
    let producer: FutureProducer = csvbus_shared::kafka::client_config(&brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let sends = (0..500).map(|i| {
        let p = producer.clone();
        let topic = topic.clone();
        async move {
            let v = format!("{{\"n\":\"{i}\"}}");
            // Keyed, so the hash partitioner spreads them; unkeyed sends are sticky and a
            // quick burst can land on one partition.
            let k = i.to_string();
            p.send(
                FutureRecord::to(&topic).key(&k).payload(&v),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
        }
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap();
    }
    let got = read_topic(
        &brokers(),
        &topic,
        500,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await;
    let mut ns: Vec<i64> = got
        .iter()
        .map(|m| m.value["n"].as_str().unwrap().parse().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..500).collect::<Vec<_>>());
    assert!(
        got.iter()
            .map(|m| m.partition)
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );
}
