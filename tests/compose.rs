//! Guards `docker-compose.yml` (there is no Docker engine here to run it): the file validates
//! against the Compose specification's JSON schema (vendored by
//! `scripts/vendor-compose-schema.sh`); every tickcast service runs a real subcommand with
//! flags it accepts and only environment variables that subcommand reads (from
//! `tickcast config-reference --json`, i.e. the command-line definition itself); published
//! ports and health-check URLs are ports the service listens on; bind mounts exist; named
//! volumes are declared and used; `depends_on` conditions are satisfiable; Prometheus scrapes
//! only services that serve metrics on that port (static targets and DNS-discovered names) and
//! every tickcast service's metrics endpoint; Grafana's Postgres datasource matches the
//! database service; Kafka runs the version the tests run. Deliberately broken copies of the
//! file are rejected with the expected message (`broken_files_are_rejected`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (command, flag, env) from `tickcast config-reference --json`.
fn reference() -> Vec<(String, String, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["config-reference", "--json"])
        .output()
        .expect("run tickcast config-reference");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["command"].as_str().unwrap().to_string(),
                v["flag"].as_str().unwrap().to_string(),
                v["env"].as_str().map(String::from),
            )
        })
        .collect()
}

/// Variables a tickcast container may carry that tickcast itself does not read.
const FOREIGN_ENV: &[&str] = &[
    // Read by the NVIDIA container toolkit (the GPU variant).
    "NVIDIA_DRIVER_CAPABILITIES",
];

fn yaml_to_json(text: &str) -> Result<Value, String> {
    let y: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("YAML: {e}"))?;
    serde_json::to_value(y).map_err(|e| format!("YAML → JSON: {e}"))
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// `http://host:port/path` → (host, port).
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    let (h, p) = hostport.rsplit_once(':')?;
    Some((h.to_string(), p.parse().ok()?))
}

/// Ports a service listens on: tickcast's from its variables, the images' own by name.
fn listening_ports(name: &str, svc: &Value) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    let env = &svc["environment"];
    for var in ["TICKCAST_LISTEN", "TICKCAST_METRICS_ADDR"] {
        if let Some(p) = env[var].as_str().and_then(port_of) {
            ports.insert(p);
        }
    }
    match name {
        "kafka" => ports.extend([9092, 9093]),
        "postgres" => ports.extend([5432]),
        "prometheus" => ports.extend([9090]),
        "grafana" => ports.extend([3000]),
        _ => {}
    }
    ports
}

fn is_tickcast(svc: &Value) -> bool {
    svc["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("tickcast:"))
}

/// Every problem found in a compose file (empty: it passes).
fn problems(text: &str, root: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    let doc = match yaml_to_json(text) {
        Ok(d) => d,
        Err(e) => return vec![e],
    };
    // 1. The Compose specification.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/compose-spec.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("compose schema compiles");
    for e in validator.iter_errors(&doc) {
        errs.push(format!("schema: {e} at {}", e.instance_path));
    }
    let Some(services) = doc["services"].as_object() else {
        errs.push("no services".into());
        return errs;
    };
    let reference = reference();
    let subcommands: BTreeSet<&str> = reference.iter().map(|(c, _, _)| c.as_str()).collect();
    let declared: BTreeSet<String> = doc["volumes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut used_volumes = BTreeSet::new();
    for (name, svc) in services {
        // 2. tickcast services: subcommand, flags, variables.
        if is_tickcast(svc) {
            let cmd: Vec<&str> = svc["command"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match cmd.first() {
                None => errs.push(format!("{name}: no command")),
                Some(sub) if !subcommands.contains(sub) => {
                    errs.push(format!("{name}: `{sub}` is not a tickcast subcommand"))
                }
                Some(sub) => {
                    let of_sub = |c: &str| c == *sub || c == "*";
                    for flag in cmd[1..].iter().filter(|a| a.starts_with("--")) {
                        let flag = flag.split('=').next().unwrap_or(flag);
                        if !reference.iter().any(|(c, f, _)| c == sub && f == flag) {
                            errs.push(format!("{name}: `tickcast {sub}` has no flag {flag}"));
                        }
                    }
                    if let Some(env) = svc["environment"].as_object() {
                        for var in env.keys() {
                            let read = reference
                                .iter()
                                .any(|(c, _, e)| of_sub(c) && e.as_deref() == Some(var.as_str()));
                            if !read && !FOREIGN_ENV.contains(&var.as_str()) {
                                errs.push(format!("{name}: `tickcast {sub}` does not read {var}"));
                            }
                        }
                    }
                }
            }
            // Health checks hit a port the service listens on.
            if let Some(test) = svc["healthcheck"]["test"].as_array() {
                let url = test
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|a| a.contains("://"));
                if let Some((host, port)) = url.and_then(url_host_port) {
                    if host != "127.0.0.1" && host != "localhost" {
                        errs.push(format!("{name}: health check of another host {host}"));
                    }
                    if !listening_ports(name, svc).contains(&port) {
                        errs.push(format!(
                            "{name}: health check on port {port}, where the service does not listen"
                        ));
                    }
                }
            }
        }
        // 3. Published ports.
        for p in svc["ports"].as_array().into_iter().flatten() {
            let spec = p
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| p.to_string());
            let container = spec
                .rsplit(':')
                .next()
                .and_then(|x| x.split('/').next())
                .and_then(|x| x.parse::<u16>().ok());
            match container {
                Some(c) if listening_ports(name, svc).contains(&c) => {}
                _ => errs.push(format!(
                    "{name}: publishes {spec}, but listens on {:?}",
                    listening_ports(name, svc)
                )),
            }
        }
        // 4. Volumes.
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let Some(v) = v.as_str() else { continue };
            let src = v.split(':').next().unwrap_or("");
            if src.starts_with("./") || src.starts_with('/') {
                if !root.join(src).exists() {
                    errs.push(format!("{name}: bind mount {src} does not exist"));
                }
            } else {
                used_volumes.insert(src.to_string());
                if !declared.contains(src) {
                    errs.push(format!("{name}: volume {src} is not declared"));
                }
            }
        }
        // 5. depends_on.
        if let Some(deps) = svc["depends_on"].as_object() {
            for (dep, cond) in deps {
                let Some(target) = services.get(dep) else {
                    errs.push(format!("{name}: depends on unknown service {dep}"));
                    continue;
                };
                match cond["condition"].as_str() {
                    Some("service_healthy") if target["healthcheck"].is_null() => errs.push(
                        format!("{name}: waits for {dep} to be healthy, which has no health check"),
                    ),
                    Some("service_completed_successfully")
                        if target["restart"].as_str() != Some("no") =>
                    {
                        errs.push(format!(
                            "{name}: waits for {dep} to complete, but {dep} restarts"
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    for v in declared.difference(&used_volumes) {
        errs.push(format!("volume {v} is declared but unused"));
    }
    // 6. Prometheus scrapes services that serve metrics there (static targets, and DNS
    // discovery: every name × the port), and every tickcast metrics endpoint is scraped.
    let prom =
        yaml_to_json(&std::fs::read_to_string(root.join("monitoring/prometheus.yml")).unwrap())
            .unwrap();
    let mut scraped: BTreeSet<(String, u16)> = BTreeSet::new();
    for job in prom["scrape_configs"].as_array().into_iter().flatten() {
        for sc in job["static_configs"].as_array().into_iter().flatten() {
            for t in sc["targets"].as_array().into_iter().flatten() {
                let (host, port) = t.as_str().unwrap().rsplit_once(':').unwrap();
                scraped.insert((host.to_string(), port.parse().unwrap()));
            }
        }
        for sd in job["dns_sd_configs"].as_array().into_iter().flatten() {
            let port = sd["port"].as_u64().unwrap() as u16;
            for n in sd["names"].as_array().into_iter().flatten() {
                scraped.insert((n.as_str().unwrap().to_string(), port));
            }
        }
    }
    for (host, port) in &scraped {
        if host == "localhost" {
            continue;
        }
        match services.get(host) {
            None => errs.push(format!(
                "prometheus scrapes {host}:{port}: no service {host}"
            )),
            Some(s) if !listening_ports(host, s).contains(port) => errs.push(format!(
                "prometheus scrapes {host}:{port}, but {host} does not listen on {port}"
            )),
            _ => {}
        }
    }
    for (name, svc) in services.iter() {
        let metrics = svc["environment"]["TICKCAST_METRICS_ADDR"]
            .as_str()
            .and_then(port_of);
        if let Some(port) = metrics
            && is_tickcast(svc)
            && !scraped.contains(&(name.clone(), port))
        {
            errs.push(format!(
                "{name} serves /metrics on {port}, but prometheus does not scrape it"
            ));
        }
    }
    // 7. Grafana's Postgres datasource matches the database service.
    let pg = &services.get("postgres").cloned().unwrap_or(Value::Null)["environment"];
    for f in std::fs::read_dir(root.join("monitoring/grafana/provisioning/datasources")).unwrap() {
        let ds = yaml_to_json(&std::fs::read_to_string(f.unwrap().path()).unwrap()).unwrap();
        for d in ds["datasources"].as_array().into_iter().flatten() {
            if d["type"].as_str().is_some_and(|t| t.contains("postgres")) {
                let host = d["url"].as_str().unwrap().split(':').next().unwrap();
                if !services.contains_key(host) {
                    errs.push(format!("grafana datasource host {host} is not a service"));
                }
                if d["user"] != pg["POSTGRES_USER"]
                    || d["jsonData"]["database"] != pg["POSTGRES_DB"]
                {
                    errs.push(format!(
                        "grafana datasource user/database {}/{} differ from postgres' {}/{}",
                        d["user"],
                        d["jsonData"]["database"],
                        pg["POSTGRES_USER"],
                        pg["POSTGRES_DB"]
                    ));
                }
            }
        }
    }
    // 8. Kafka: the version the tests run (scripts/kafka/pom.xml).
    let pom = std::fs::read_to_string(root.join("scripts/kafka/pom.xml")).unwrap();
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap();
    let image = services
        .get("kafka")
        .and_then(|k| k["image"].as_str())
        .unwrap_or("");
    if image != format!("apache/kafka:{version}") {
        errs.push(format!(
            "kafka image {image}, tests run apache/kafka {version}"
        ));
    }
    errs
}

fn compose_text() -> String {
    std::fs::read_to_string(root().join("docker-compose.yml")).unwrap()
}

#[test]
fn compose_file_is_consistent() {
    let errs = problems(&compose_text(), &root());
    assert!(errs.is_empty(), "docker-compose.yml:\n{}", errs.join("\n"));
    // The stack has every part the design names.
    let doc = yaml_to_json(&compose_text()).unwrap();
    let names: BTreeSet<&str> = doc["services"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for s in [
        "kafka",
        "topics",
        "postgres",
        "migrate",
        "ingest",
        "candles",
        "forecast",
        "alert",
        "sink",
        "api",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(s), "missing service {s}");
    }
}

#[test]
fn broken_files_are_rejected() {
    let good = compose_text();
    let cases: BTreeMap<&str, (String, &str)> = BTreeMap::from([
        (
            "unknown subcommand",
            (
                good.replace(r#"command: ["topics"]"#, r#"command: ["topix"]"#),
                "`topix` is not a tickcast subcommand",
            ),
        ),
        (
            "unknown flag",
            (
                good.replace(
                    r#"command: ["migrate"]"#,
                    r#"command: ["migrate", "--dry-run"]"#,
                ),
                "`tickcast migrate` has no flag --dry-run",
            ),
        ),
        (
            "variable nobody reads",
            (
                good.replacen(
                    "      TICKCAST_STAGES: sink\n",
                    "      TICKCAST_STAGE: sink\n",
                    1,
                ),
                "does not read TICKCAST_STAGE",
            ),
        ),
        (
            "variable of another subcommand",
            (
                good.replacen(
                    "      TICKCAST_STAGES: candles\n",
                    "      TICKCAST_STAGES: candles\n      TICKCAST_API_TOKEN: x\n",
                    1,
                ),
                "`tickcast run` does not read TICKCAST_API_TOKEN",
            ),
        ),
        (
            "published port nobody listens on",
            (
                good.replace(r#"- "8080:8080""#, r#"- "8080:8081""#),
                "api: publishes 8080:8081",
            ),
        ),
        (
            "health check on the wrong port",
            (
                good.replacen(
                    "http://127.0.0.1:8080/readyz",
                    "http://127.0.0.1:8081/readyz",
                    1,
                ),
                "api: health check on port 8081",
            ),
        ),
        (
            "undeclared volume",
            (
                good.replacen(
                    "      - grafana-data:/var/lib/grafana\n",
                    "      - grafana-store:/var/lib/grafana\n",
                    1,
                ),
                "volume grafana-store is not declared",
            ),
        ),
        (
            "missing bind mount",
            (
                good.replace("./monitoring/rules:", "./monitoring/rulez:"),
                "bind mount ./monitoring/rulez does not exist",
            ),
        ),
        (
            "schema violation",
            (
                good.replacen(
                    "    restart: unless-stopped\n",
                    "    restart: 7\n    mystery: true\n",
                    1,
                ),
                "schema:",
            ),
        ),
        (
            "healthy condition without a health check",
            (
                good.replacen(
                    "      kafka:\n        condition: service_healthy",
                    "      topics:\n        condition: service_healthy",
                    1,
                ),
                "waits for topics to be healthy",
            ),
        ),
        (
            "wrong Kafka version",
            (
                good.replace("apache/kafka:4.1.1", "apache/kafka:3.7.0"),
                "kafka image apache/kafka:3.7.0",
            ),
        ),
        (
            "metrics on a port prometheus does not scrape",
            (
                {
                    // The sink's metrics address only.
                    let (head, sink) = good.split_once("\n  sink:\n").unwrap();
                    let sink = sink.replacen(
                        "TICKCAST_METRICS_ADDR: 0.0.0.0:9100",
                        "TICKCAST_METRICS_ADDR: 0.0.0.0:9101",
                        1,
                    );
                    format!("{head}\n  sink:\n{sink}")
                },
                "prometheus scrapes sink:9100, but sink does not listen on 9100",
            ),
        ),
        ("not YAML", (format!("{good}\n  - : [\n"), "YAML")),
    ]);
    for (what, (text, want)) in cases {
        assert_ne!(text, good, "{what}: the replacement did not apply");
        let errs = problems(&text, &root());
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{what}: expected an error containing {want:?}, got {errs:#?}"
        );
    }
}

#[test]
fn dockerfile_builds_every_service_as_a_non_root_user() {
    let d = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(d.contains("USER tickcast"), "runtime runs as root");
    assert!(d.contains("HEALTHCHECK"), "no HEALTHCHECK");
    assert!(
        d.contains("AS runtime-gpu") && d.contains("libvulkan1"),
        "no GPU variant"
    );
    assert!(d.contains("--locked"), "build not locked to Cargo.lock");
    let doc = yaml_to_json(&compose_text()).unwrap();
    let gpu = &doc["services"]["forecast-gpu"];
    assert_eq!(gpu["build"]["target"], "runtime-gpu");
    assert_eq!(gpu["profiles"], serde_json::json!(["gpu"]));
}

#[test]
fn readme_configuration_reference_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("config-reference")
        .output()
        .expect("run tickcast config-reference");
    assert!(out.status.success());
    let want = String::from_utf8(out.stdout).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let got = readme
        .split("<!-- config-reference:start -->\n")
        .nth(1)
        .and_then(|s| s.split("<!-- config-reference:end -->").next())
        .expect("README has the config-reference block");
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .find(|(a, b)| a != b)
            .map_or("(a line missing or extra)".to_string(), |(a, b)| {
                format!("README: {a}\nbinary: {b}")
            });
        panic!(
            "README's configuration reference is stale (paste `tickcast config-reference` \
             between the markers); first difference:\n{first}"
        );
    }
}
