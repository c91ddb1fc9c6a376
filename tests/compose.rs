//! compose.yaml cannot run here (no Docker engine), so it is checked instead: its services,
//! images and healthchecks, and that every environment variable it sets on csvbus is one the
//! services read and docs/operations.md documents — and that its table and the code agree.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// Names in backticks in the first column of the configuration table (docs/operations.md).
fn readme_names() -> BTreeSet<String> {
    let readme = read("docs/operations.md");
    let table = readme.split("## Configuration").nth(1).unwrap();
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .filter_map(|c| c.trim().strip_prefix('`')?.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

/// Variable names the services' config code reads (string literals in the config modules).
fn code_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in [
        "shared/src/config.rs",
        "shared/src/telemetry.rs",
        "shared/src/webhook.rs",
        "services/upload/src/config.rs",
        "services/sink/src/config.rs",
        "shared/src/malloc.rs",
    ] {
        for lit in read(file).split('"').skip(1).step_by(2) {
            let is_name = lit.len() > 3
                && lit.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && (lit.starts_with("CSVBUS_")
                    || lit.starts_with("MALLOC_")
                    || lit.contains("_URL")
                    || lit.contains("KAFKA"));
            if is_name {
                names.insert(lit.to_owned());
            }
        }
    }
    names
}

fn compose() -> Value {
    let mut v: Value = serde_yaml::from_str(&read("compose.yaml")).unwrap();
    // An anchor may merge another (the sinks' environment merges the common one): one pass
    // per level, as compose itself resolves them.
    v.apply_merge().unwrap();
    v.apply_merge().unwrap();
    v
}

#[test]
fn the_readme_documents_exactly_the_variables_the_services_read() {
    let readme = readme_names();
    let mut code = code_names();
    code.insert("RUST_LOG".into()); // read by tracing's EnvFilter
    assert!(code.len() > 20, "{code:?}");
    assert_eq!(readme, code);
}

#[test]
fn compose_sets_only_documented_variables_and_runs_the_designed_stack() {
    let c = compose();
    let services = c["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["kafka", "postgres", "migrate", "upload", "sink-1", "sink-2"])
    );

    // Images: Apache Kafka's official image (KRaft) and PostgreSQL 16, both named in the README.
    let readme = read("README.md");
    let kafka = c["services"]["kafka"]["image"].as_str().unwrap();
    let postgres = c["services"]["postgres"]["image"].as_str().unwrap();
    assert!(kafka.starts_with("apache/kafka:"), "{kafka}");
    assert!(postgres.starts_with("postgres:16"), "{postgres}");
    assert!(readme.contains(kafka) && readme.contains(postgres));
    assert_eq!(
        c["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"],
        "broker,controller"
    );
    for s in ["kafka", "postgres"] {
        assert!(c["services"][s]["healthcheck"]["test"].is_sequence(), "{s}");
    }
    assert!(c["services"]["postgres"]["volumes"].is_sequence());

    // csvbus services: the documented variables only, the designed commands and order.
    let documented = readme_names();
    for s in ["migrate", "upload", "sink-1", "sink-2"] {
        let env = c["services"][s]["environment"].as_mapping().unwrap();
        for k in env.keys() {
            let k = k.as_str().unwrap();
            assert!(
                documented.contains(k),
                "{s} sets {k}, not in docs/operations.md"
            );
        }
        assert!(env.contains_key("DATABASE_URL"), "{s}");
    }
    assert_eq!(
        c["services"]["migrate"]["command"],
        serde_yaml::from_str::<Value>("[csvbus, migrate]").unwrap()
    );
    assert_eq!(c["services"]["upload"]["command"][0], "csvbus-upload");
    // Two sink replicas in one group, each with its own static member id.
    let ids: BTreeSet<&str> = ["sink-1", "sink-2"]
        .iter()
        .map(|s| {
            assert_eq!(c["services"][s]["command"][0], "csvbus-sink");
            assert_eq!(
                c["services"][s]["environment"]["CSVBUS_SINK_GROUP"],
                "csvbus-sink"
            );
            c["services"][s]["environment"]["CSVBUS_SINK_INSTANCE_ID"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 2, "distinct instance ids");
    // Published on the host's loopback only: closed by default.
    assert_eq!(c["services"]["upload"]["ports"][0], "127.0.0.1:8080:8080");
    assert_eq!(c["services"]["postgres"]["ports"][0], "127.0.0.1:5432:5432");
    // Least privilege: the services connect as csvbus_app, the migration as csvbus_migrate
    // (deploy/postgres/roles.sql, run by the image on an empty volume; tests/roles.rs runs the
    // services under those grants against the real Postgres).
    let user = |s: &str| {
        let url = c["services"][s]["environment"]["DATABASE_URL"]
            .as_str()
            .unwrap();
        url.split("://")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(user("migrate"), "csvbus_migrate");
    for s in ["upload", "sink-1", "sink-2"] {
        assert_eq!(user(s), "csvbus_app", "{s}");
    }
    let volumes = c["services"]["postgres"]["volumes"].as_sequence().unwrap();
    assert!(
        volumes.iter().any(|v| v
            == "./deploy/postgres/roles.sql:/docker-entrypoint-initdb.d/10-roles.sql:ro"),
        "{volumes:?}"
    );
    for s in ["upload", "sink-1", "sink-2"] {
        let deps = &c["services"][s]["depends_on"];
        assert_eq!(deps["kafka"]["condition"], "service_healthy", "{s}");
        assert_eq!(
            deps["migrate"]["condition"], "service_completed_successfully",
            "{s}"
        );
        assert_eq!(
            c["services"][s]["environment"]["KAFKA_BROKERS"], "kafka:9092",
            "{s}"
        );
    }

    // The image they run: a multi-stage Dockerfile that builds those three binaries.
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2
    );
    for bin in ["csvbus-upload", "csvbus-sink", "--bin csvbus "] {
        assert!(dockerfile.contains(bin), "{bin}");
    }
}

/// `over` applied onto `base` as `docker compose -f base -f over` does: mappings merged key by
/// key, anything else replaced.
fn overlay(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => overlay(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[test]
fn the_scale_out_profile_runs_three_brokers_a_replicated_topic_and_three_sinks() {
    let mut c = compose();
    let mut over: Value = serde_yaml::from_str(&read("compose.scale-out.yaml")).unwrap();
    over.apply_merge().unwrap();
    over.apply_merge().unwrap();
    overlay(&mut c, over);
    let s = &c["services"];
    let names: BTreeSet<&str> = s
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
        .collect();
    for n in [
        "kafka", "kafka-2", "kafka-3", "topic", "upload", "sink-1", "sink-2", "sink-3",
    ] {
        assert!(names.contains(n), "{n}");
    }

    // Three KRaft nodes, each broker and controller, one quorum, one cluster.
    let kafkas = ["kafka", "kafka-2", "kafka-3"];
    let env = |n: &str, k: &str| s[n]["environment"][k].clone();
    let ids: BTreeSet<i64> = kafkas
        .iter()
        .map(|n| env(n, "KAFKA_NODE_ID").as_i64().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    for n in kafkas {
        assert_eq!(env(n, "KAFKA_PROCESS_ROLES"), "broker,controller");
        assert_eq!(
            env(n, "KAFKA_CONTROLLER_QUORUM_VOTERS"),
            "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
        );
        assert_eq!(env(n, "CLUSTER_ID"), env("kafka", "CLUSTER_ID"));
        assert_eq!(
            env(n, "KAFKA_ADVERTISED_LISTENERS"),
            format!("PLAINTEXT://{n}:9092").as_str()
        );
        assert_eq!(env(n, "KAFKA_DEFAULT_REPLICATION_FACTOR").as_i64(), Some(3));
        assert_eq!(env(n, "KAFKA_MIN_INSYNC_REPLICAS").as_i64(), Some(2));
        assert_eq!(
            env(n, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR").as_i64(),
            Some(3)
        );
        assert!(s[n]["healthcheck"]["test"].is_sequence(), "{n}");
    }

    // The topic: made once, 12 partitions, 3 replicas, 2 in sync to write.
    let topic_cmd: Vec<&str> = s["topic"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let topic = env("upload", "CSVBUS_TOPIC");
    for arg in [
        "--create".to_owned(),
        "--partitions=12".to_owned(),
        "--replication-factor=3".to_owned(),
        "--config=min.insync.replicas=2".to_owned(),
        format!("--topic={}", topic.as_str().unwrap()),
    ] {
        assert!(topic_cmd.contains(&arg.as_str()), "{arg}: {topic_cmd:?}");
    }
    for n in kafkas {
        assert_eq!(s["topic"]["depends_on"][n]["condition"], "service_healthy");
    }

    // The csvbus services: all three brokers, 12 partitions, the topic made by `topic`.
    let documented = readme_names();
    let sinks = ["sink-1", "sink-2", "sink-3"];
    for n in std::iter::once("upload").chain(sinks) {
        assert_eq!(
            env(n, "KAFKA_BROKERS"),
            "kafka:9092,kafka-2:9092,kafka-3:9092",
            "{n}"
        );
        assert_eq!(env(n, "CSVBUS_TOPIC_PARTITIONS"), "12", "{n}");
        assert_eq!(env(n, "CSVBUS_TOPIC_CREATE"), "false", "{n}");
        assert_eq!(env(n, "CSVBUS_TOPIC"), topic, "{n}");
        assert_eq!(
            s[n]["depends_on"]["topic"]["condition"],
            "service_completed_successfully"
        );
        assert_eq!(
            s[n]["depends_on"]["migrate"]["condition"],
            "service_completed_successfully"
        );
        let url = env(n, "DATABASE_URL");
        assert!(
            url.as_str().unwrap().starts_with("postgres://csvbus_app:"),
            "{n}"
        );
        for k in s[n]["environment"].as_mapping().unwrap().keys() {
            let k = k.as_str().unwrap();
            assert!(
                documented.contains(k),
                "{n} sets {k}, not in docs/operations.md"
            );
        }
    }
    // Three sinks of one group, each with its own static member id.
    let ids: BTreeSet<String> = sinks
        .iter()
        .map(|n| {
            assert_eq!(s[n]["command"][0], "csvbus-sink");
            assert_eq!(env(n, "CSVBUS_SINK_GROUP"), "csvbus-sink");
            env(n, "CSVBUS_SINK_INSTANCE_ID")
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3);
}
