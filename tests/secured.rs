//! Kafka over SASL_SSL (SCRAM-SHA-512, mutual TLS) and Postgres over TLS (verify-full, a client
//! certificate), as `scripts/test.sh` starts them: certificates from `scripts/tls.sh`, the broker
//! with a second listener (`scripts/kafka.sh`, `KAFKA_SASL_SSL_PORT`), Postgres with `ssl = on`
//! and a role that may log in only over TLS (`scripts/postgres.sh`, `PG_TLS_DIR`).
//!
//! - the binary reaches both with the right settings, given the way users give them (librdkafka
//!   properties from the environment, a password from a file);
//! - a wrong password, an unknown CA, and plaintext to a TLS port each fail within seconds, with
//!   an error naming the cause, and without retrying;
//! - secrets never reach the output.
//!
//! The end-to-end pipeline over both runs as `tests/e2e.rs` with the secured settings
//! (`scripts/test.sh`).
//!
//! Needs `TICKCAST_TLS_DIR`, `TICKCAST_TLS_KAFKA` (host:port of the SASL_SSL listener) and
//! `TICKCAST_TLS_DATABASE_URL` (the TLS role's URL without TLS parameters); skipped without them.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Secured {
    tls: PathBuf,
    kafka: String,
    database: String,
}

fn secured() -> Option<Secured> {
    match (
        std::env::var("TICKCAST_TLS_DIR"),
        std::env::var("TICKCAST_TLS_KAFKA"),
        std::env::var("TICKCAST_TLS_DATABASE_URL"),
    ) {
        (Ok(tls), Ok(kafka), Ok(database)) => Some(Secured {
            tls: PathBuf::from(tls),
            kafka,
            database,
        }),
        _ => {
            eprintln!("SKIPPED secured: run it with scripts/test.sh (TICKCAST_TLS_* unset)");
            None
        }
    }
}

const KAFKA_PASSWORD: &str = "tickcast-kafka-secret";
const PG_PASSWORD: &str = "tickcast-tls-secret";

/// The librdkafka properties of a client of the SASL_SSL listener, as environment variables.
fn kafka_env(s: &Secured, ca: &Path, password_file: &Path) -> Vec<(String, String)> {
    let p = |k: &str, v: &str| (format!("TICKCAST_KAFKA_PROPERTY_{k}"), v.to_string());
    vec![
        p("SECURITY_PROTOCOL", "SASL_SSL"),
        p("SASL_MECHANISM", "SCRAM-SHA-512"),
        p("SASL_USERNAME", "tickcast"),
        p("SASL_PASSWORD_FILE", password_file.to_str().unwrap()),
        p("SSL_CA_LOCATION", ca.to_str().unwrap()),
        p(
            "SSL_CERTIFICATE_LOCATION",
            s.tls.join("client.pem").to_str().unwrap(),
        ),
        p(
            "SSL_KEY_LOCATION",
            s.tls.join("client.key").to_str().unwrap(),
        ),
        p("BROKER_ADDRESS_FAMILY", "v4"),
    ]
}

/// The TLS role's URL with verify-full against `ca`, and the client certificate.
fn pg_url(s: &Secured, ca: &Path, mode: &str) -> String {
    format!(
        "{}?sslmode={mode}&sslrootcert={}&sslcert={}&sslkey={}",
        s.database,
        ca.display(),
        s.tls.join("client.pem").display(),
        s.tls.join("client.key").display()
    )
}

struct Ran {
    ok: bool,
    output: String,
    took: Duration,
}

/// Runs the binary with a clean Kafka/Postgres environment plus `env`.
fn tickcast(args: &[&str], env: &[(String, String)]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickcast"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TICKCAST_") || k.starts_with("PG") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    Ran {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: started.elapsed(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickcast-secured-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A failure must come fast, name `cause`, and leak no secret.
fn assert_refused(what: &str, r: &Ran, cause: &[&str]) {
    assert!(!r.ok, "{what}: succeeded\n{}", r.output);
    assert!(
        r.took < Duration::from_secs(15),
        "{what}: took {:?} to fail\n{}",
        r.took,
        r.output
    );
    assert!(
        cause.iter().any(|c| r.output.contains(c)),
        "{what}: the error does not name the cause ({cause:?})\n{}",
        r.output
    );
    for secret in [KAFKA_PASSWORD, PG_PASSWORD, "wrong-password"] {
        assert!(
            !r.output.contains(secret),
            "{what}: a secret in the output\n{}",
            r.output
        );
    }
    eprintln!("{what}: refused in {:.1} s", r.took.as_secs_f64());
}

#[test]
fn kafka_over_sasl_ssl_works_and_misconfigurations_fail_fast() {
    let Some(s) = secured() else { return };
    let dir = scratch("kafka");
    let good = write(&dir, "kafka-password", &format!("{KAFKA_PASSWORD}\n"));
    let bad = write(&dir, "kafka-wrong", "wrong-password\n");
    let ca = s.tls.join("ca.pem");
    let other_ca = s.tls.join("other-ca.pem");
    let prefix = format!("secured{}.", std::process::id());
    let topics = |env: &[(String, String)], bootstrap: &str| {
        tickcast(
            &[
                "topics",
                "--bootstrap",
                bootstrap,
                "--topic-prefix",
                &prefix,
            ],
            env,
        )
    };

    let r = topics(&kafka_env(&s, &ca, &good), &s.kafka);
    assert!(
        r.ok,
        "SASL_SSL with the right settings failed:\n{}",
        r.output
    );
    assert!(r.output.contains("topics ready"), "{}", r.output);
    assert!(!r.output.contains(KAFKA_PASSWORD), "{}", r.output);

    // The same through the config file's [kafka] table.
    let config = write(
        &dir,
        "tickcast.toml",
        &format!(
            "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = \"tickcast\"\n\"sasl.password_file\" = \"{}\"\n\
             \"ssl.ca.location\" = \"{}\"\n\"ssl.certificate.location\" = \"{}\"\n\
             \"ssl.key.location\" = \"{}\"\n\"broker.address.family\" = \"v4\"\n",
            good.display(),
            ca.display(),
            s.tls.join("client.pem").display(),
            s.tls.join("client.key").display()
        ),
    );
    let r = tickcast(
        &[
            "topics",
            "--bootstrap",
            &s.kafka,
            "--topic-prefix",
            &prefix,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(r.ok, "SASL_SSL from the config file failed:\n{}", r.output);

    let r = topics(&kafka_env(&s, &ca, &bad), &s.kafka);
    assert_refused(
        "Kafka, wrong password",
        &r,
        &["Authentication failed", "SASL authentication error"],
    );

    let r = topics(&kafka_env(&s, &other_ca, &good), &s.kafka);
    assert_refused(
        "Kafka, unknown CA",
        &r,
        &["certificate verify failed", "SSL handshake failed"],
    );

    // Plaintext to the SASL_SSL port.
    let r = topics(
        &[(
            "TICKCAST_KAFKA_PROPERTY_BROKER_ADDRESS_FAMILY".into(),
            "v4".into(),
        )],
        &s.kafka,
    );
    assert_refused(
        "Kafka, plaintext to the TLS port",
        &r,
        &["security.protocol", "SSL"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn postgres_over_tls_works_and_misconfigurations_fail_fast() {
    let Some(s) = secured() else { return };
    let dir = scratch("postgres");
    let ca = s.tls.join("ca.pem");
    let other_ca = s.tls.join("other-ca.pem");
    let password = write(
        &dir,
        "pgpass",
        &format!("*:*:*:tickcast_tls:{PG_PASSWORD}\n"),
    );
    // libpq's rule, which the driver keeps: nobody else may read the password file.
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // The URL carries no password: it comes from libpq's password file.
    let url = pg_url(&s, &ca, "verify-full");
    let r = tickcast(
        &["migrate"],
        &[
            ("DATABASE_URL".into(), url.clone()),
            ("PGPASSFILE".into(), password.display().to_string()),
        ],
    );
    assert!(
        r.ok,
        "verify-full with the right settings failed:\n{}",
        r.output
    );
    // And the whole URL from a file.
    let with_password = url.replacen("tickcast_tls@", &format!("tickcast_tls:{PG_PASSWORD}@"), 1);
    let url_file = write(&dir, "url", &with_password);
    let r = tickcast(
        &["migrate"],
        &[("DATABASE_URL_FILE".into(), url_file.display().to_string())],
    );
    assert!(r.ok, "DATABASE_URL_FILE failed:\n{}", r.output);
    assert!(!r.output.contains(PG_PASSWORD), "{}", r.output);

    let wrong = url.replacen("tickcast_tls@", "tickcast_tls:wrong-password@", 1);
    let r = tickcast(&["migrate"], &[("DATABASE_URL".into(), wrong)]);
    assert_refused(
        "Postgres, wrong password",
        &r,
        &["password authentication failed"],
    );

    let r = tickcast(
        &["migrate"],
        &[
            ("DATABASE_URL".into(), pg_url(&s, &other_ca, "verify-full")),
            ("PGPASSFILE".into(), password.display().to_string()),
        ],
    );
    assert_refused(
        "Postgres, unknown CA",
        &r,
        &["UnknownIssuer", "certificate"],
    );

    let r = tickcast(
        &["migrate"],
        &[
            (
                "DATABASE_URL".into(),
                format!("{}?sslmode=disable", s.database),
            ),
            ("PGPASSFILE".into(), password.display().to_string()),
        ],
    );
    assert_refused(
        "Postgres, plaintext for a TLS-only role",
        &r,
        &["no encryption", "pg_hba.conf rejects"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
