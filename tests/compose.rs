//! Guards `docker-compose.yml` (there is no Docker engine here to run it): the file validates
//! against the Compose specification's JSON schema (vendored by
//! `scripts/vendor-compose-schema.sh`); every tickcast service runs a real subcommand with
//! flags it accepts and only environment variables that subcommand reads (from
//! `tickcast config-reference --json`, i.e. the command-line definition itself); published
//! ports and health-check URLs are ports the service listens on; bind mounts exist; named
//! volumes are declared and used; `depends_on` conditions are satisfiable; Prometheus scrapes
//! only services that serve metrics on that port (static targets and DNS-discovered names) and
//! every tickcast service's metrics endpoint; Grafana's Postgres datasource matches the
//! database service and logs in as a read-only role, never the tables' owner; the passwords are
//! required (no defaults), Grafana's anonymous access is off, and published ports listen on
//! 127.0.0.1 unless a variable says otherwise; Kafka runs the version the tests run.
//!
//! Images are read as Docker builds them: each tickcast service's image is built by a service
//! with a `build` section (its own or another with the same image name), which produces its
//! `target` stage or, without one, the Dockerfile's last stage. The `ENV` of that stage and the
//! stages it derives from counts as the service's environment, and values the binary cannot
//! honour are rejected (a `wgpu` LSTM device in a build without the `wgpu` feature).
//! Deliberately broken copies of both files are rejected with the expected message
//! (`broken_files_are_rejected`). `scripts/compose-test.sh` runs the stack for real.

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

/// One stage of a Dockerfile: its name, what it is built `FROM` (an image or an earlier stage),
/// its `ENV`, and its `ARG` defaults.
#[derive(Debug, Clone)]
struct Stage {
    name: String,
    from: String,
    env: BTreeMap<String, String>,
    args: BTreeMap<String, String>,
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `K=V K2="V 2"` (or the old `K V` form of `ENV`) → pairs.
fn key_values(rest: &str) -> Vec<(String, String)> {
    let rest = rest.trim();
    if !rest.split_whitespace().next().unwrap_or("").contains('=') {
        // `ENV KEY value with spaces` / `ARG NAME`.
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return vec![(k.to_string(), v.trim().to_string())];
    }
    let mut pairs = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            val = chars.by_ref().take_while(|&c| c != '"').collect();
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                val.push(c);
            }
        }
        if !key.is_empty() {
            pairs.push((key, val));
        }
    }
    pairs
}

/// The stages of a Dockerfile, in order.
fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for ins in instructions(dockerfile) {
        let (word, rest) = ins.split_once(char::is_whitespace).unwrap_or((&ins, ""));
        match word.to_ascii_uppercase().as_str() {
            "FROM" => {
                let parts: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|p| !p.starts_with("--"))
                    .collect();
                let from = parts.first().copied().unwrap_or("").to_string();
                let name = match parts.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => (*n).to_string(),
                    _ => out.len().to_string(),
                };
                out.push(Stage {
                    name,
                    from,
                    env: BTreeMap::new(),
                    args: BTreeMap::new(),
                });
            }
            "ENV" => {
                if let Some(st) = out.last_mut() {
                    st.env.extend(key_values(rest));
                }
            }
            "ARG" => {
                if let Some(st) = out.last_mut() {
                    st.args.extend(key_values(rest));
                }
            }
            _ => {}
        }
    }
    out
}

/// The `ENV` a stage's image carries: its own over those of the stages it derives from.
fn stage_env(stages: &[Stage], name: &str) -> BTreeMap<String, String> {
    let mut chain = Vec::new();
    let mut cur = stages.iter().rev().find(|s| s.name == name);
    while let Some(st) = cur {
        chain.push(st);
        cur = stages.iter().rev().find(|s| s.name == st.from);
    }
    let mut env = BTreeMap::new();
    for st in chain.into_iter().rev() {
        env.extend(st.env.clone());
    }
    env
}

/// What a service's `build` section produces: the stage (its `target`, else the Dockerfile's
/// last) and its build arguments.
#[derive(Debug, Clone, PartialEq)]
struct Build {
    stage: String,
    args: BTreeMap<String, String>,
}

fn build_of(svc: &Value, stages: &[Stage]) -> Option<Result<Build, String>> {
    let b = &svc["build"];
    if b.is_null() {
        return None;
    }
    let last = stages.last().map(|s| s.name.clone()).unwrap_or_default();
    let stage = b["target"].as_str().map_or(last, String::from);
    if !stages.iter().any(|s| s.name == stage) {
        return Some(Err(format!(
            "builds target `{stage}`, which the Dockerfile has no stage named"
        )));
    }
    let args = b["args"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
        .unwrap_or_default();
    Some(Ok(Build { stage, args }))
}

/// The cargo features a build compiles in (the `build` stage's `FEATURES` argument).
fn features(build: &Build, stages: &[Stage]) -> BTreeSet<String> {
    let default = stages
        .iter()
        .find_map(|s| s.args.get("FEATURES").cloned())
        .unwrap_or_default();
    build
        .args
        .get("FEATURES")
        .cloned()
        .unwrap_or(default)
        .split([',', ' '])
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect()
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
    // `--listen ADDR` on the command line (the replay exchange).
    if let Some(p) = flag_value(&command(svc), "--listen").and_then(port_of) {
        ports.insert(p);
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

/// A service's `command` as its words.
fn command(svc: &Value) -> Vec<&str> {
    svc["command"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The value of `flag` in a command: `--flag VALUE` or `--flag=VALUE`.
fn flag_value<'a>(cmd: &[&'a str], flag: &str) -> Option<&'a str> {
    cmd.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix(flag) {
            Some("") => cmd.get(i + 1).copied(),
            Some(v) => v.strip_prefix('='),
            None => None,
        })
}

/// A YAML scalar as text (`"6"` and `6` alike).
fn scalar_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

fn is_tickcast(svc: &Value) -> bool {
    svc["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("tickcast:"))
}

/// Every problem found in a compose file and the Dockerfile it builds (empty: they pass).
fn problems(text: &str, dockerfile: &str, root: &Path) -> Vec<String> {
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
    let stages = stages(dockerfile);
    // Which build produces each image: services with a `build` section, by image name. Two
    // different builds under one name would make the image depend on which one ran last.
    let mut builds: BTreeMap<String, Build> = BTreeMap::new();
    for (name, svc) in services {
        let image = svc["image"].as_str().unwrap_or(name).to_string();
        match build_of(svc, &stages) {
            None => {}
            Some(Err(e)) => errs.push(format!("{name}: {e}")),
            Some(Ok(b)) => match builds.get(&image) {
                Some(other) if *other != b => errs.push(format!(
                    "{name}: builds {image} from stage `{}` {:?}, another service from `{}` {:?}",
                    b.stage, b.args, other.stage, other.args
                )),
                _ => {
                    builds.insert(image, b);
                }
            },
        }
    }
    for (name, svc) in services {
        // 2. tickcast services: subcommand, flags, variables (the service's own over those its
        // image's stage sets), and values the build can honour.
        if is_tickcast(svc) {
            let image = svc["image"].as_str().unwrap_or_default();
            let build = builds.get(image);
            if build.is_none() {
                errs.push(format!("{name}: no service builds {image}"));
            }
            let mut env: BTreeMap<String, (String, String)> = build
                .map(|b| {
                    stage_env(&stages, &b.stage)
                        .into_iter()
                        .map(|(k, v)| (k, (v, format!("the image's stage `{}`", b.stage))))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in svc["environment"].as_object().into_iter().flatten() {
                env.insert(k.clone(), (scalar_text(v), "the service".into()));
            }
            let cmd = command(svc);
            let cmd_device = flag_value(&cmd, "--lstm-device")
                .map(|d| (d.to_string(), "the command".to_string()));
            if let Some((device, whence)) =
                cmd_device.or_else(|| env.get("TICKCAST_LSTM_DEVICE").cloned())
            {
                match device.parse::<tickcast_forecast::models::lstm::DeviceChoice>() {
                    Err(e) => errs.push(format!("{name}: TICKCAST_LSTM_DEVICE from {whence}: {e}")),
                    Ok(tickcast_forecast::models::lstm::DeviceChoice::Wgpu) => {
                        if let Some(b) = build
                            && !features(b, &stages).contains("wgpu")
                        {
                            errs.push(format!(
                                "{name}: LSTM device `{device}` from {whence}, but {image} is \
                                 built without the `wgpu` feature (stage `{}`, FEATURES {:?})",
                                b.stage,
                                b.args.get("FEATURES").cloned().unwrap_or_default()
                            ));
                        }
                    }
                    Ok(_) => {}
                }
            }
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
                    for (var, (_, whence)) in &env {
                        let read = reference
                            .iter()
                            .any(|(c, _, e)| of_sub(c) && e.as_deref() == Some(var.as_str()));
                        if !read && !FOREIGN_ENV.contains(&var.as_str()) {
                            errs.push(format!(
                                "{name}: `tickcast {sub}` does not read {var} (set by {whence})"
                            ));
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
    // 7. Grafana's Postgres datasource: the database service, as a read-only role.
    let datasources: Vec<String> =
        std::fs::read_dir(root.join("monitoring/grafana/provisioning/datasources"))
            .unwrap()
            .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
            .collect();
    errs.extend(datasource_problems(services, &datasources, root));
    // 9. Nothing open by default: the passwords are required (no defaults), Grafana has no
    // anonymous access, and what is published listens on 127.0.0.1 unless a variable says so.
    for var in [
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "GRAFANA_DB_PASSWORD",
    ] {
        let uses: Vec<&str> = text
            .split("${")
            .skip(1)
            .filter(|u| u.starts_with(var))
            .collect();
        if uses.is_empty() {
            errs.push(format!("{var} is never required"));
        }
        for u in uses {
            if !u[var.len()..].starts_with(":?") {
                errs.push(format!(
                    "{var} has a default or may be empty (`${{{}`): require it with `:?`",
                    u.split('}').next().unwrap_or(u)
                ));
            }
        }
    }
    if let Some(g) = services.get("grafana") {
        let env = &g["environment"];
        if env["GF_AUTH_ANONYMOUS_ENABLED"].as_str() != Some("false") {
            errs.push("grafana: anonymous access is not turned off (GF_AUTH_ANONYMOUS_ENABLED: \"false\")".into());
        }
        if !env["GF_SECURITY_ADMIN_PASSWORD"]
            .as_str()
            .is_some_and(|v| v.starts_with("${GRAFANA_ADMIN_PASSWORD:?"))
        {
            errs.push(
                "grafana: the admin password is not required from GRAFANA_ADMIN_PASSWORD".into(),
            );
        }
    }
    for (name, svc) in services {
        for p in svc["ports"].as_array().into_iter().flatten() {
            let spec = p
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| p.to_string());
            if !published_on_loopback(&spec) {
                errs.push(format!(
                    "{name}: publishes {spec} on every interface; bind it to 127.0.0.1 \
                     (`${{TICKCAST_PUBLISH_ADDR:-127.0.0.1}}:PORT:PORT`)"
                ));
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

/// Whether a port mapping binds the host side to the loopback address: `127.0.0.1:H:C`, or a
/// variable whose default is 127.0.0.1.
fn published_on_loopback(spec: &str) -> bool {
    let host = match spec.strip_prefix("${") {
        Some(var) => match var.split_once('}') {
            Some((inner, _)) => inner.split_once(":-").map_or("", |(_, d)| d).to_string(),
            None => return false,
        },
        None => {
            let parts: Vec<&str> = spec.split(':').collect();
            if parts.len() < 3 {
                return false;
            }
            parts[0].to_string()
        }
    };
    host == "127.0.0.1" || host == "localhost" || host == "[::1]"
}

/// Grafana's Postgres datasources: the database service's host and database, as a login role
/// that is not the tables' owner and is made read-only by the database's init scripts.
fn datasource_problems(
    services: &serde_json::Map<String, Value>,
    datasources: &[String],
    root: &Path,
) -> Vec<String> {
    let mut errs = Vec::new();
    let postgres = services.get("postgres").cloned().unwrap_or(Value::Null);
    let pg = &postgres["environment"];
    // The init scripts the database service runs on a fresh volume.
    let mut init = String::new();
    for v in postgres["volumes"].as_array().into_iter().flatten() {
        let spec = v.as_str().unwrap_or_default();
        if let Some((src, rest)) = spec.split_once(':')
            && rest.starts_with("/docker-entrypoint-initdb.d")
            && let Ok(dir) = std::fs::read_dir(root.join(src))
        {
            for f in dir {
                init.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap_or_default());
            }
        }
    }
    for text in datasources {
        let ds = yaml_to_json(text).unwrap();
        for d in ds["datasources"].as_array().into_iter().flatten() {
            if !d["type"].as_str().is_some_and(|t| t.contains("postgres")) {
                continue;
            }
            let host = d["url"].as_str().unwrap().split(':').next().unwrap();
            if !services.contains_key(host) {
                errs.push(format!("grafana datasource host {host} is not a service"));
            }
            if d["jsonData"]["database"] != pg["POSTGRES_DB"] {
                errs.push(format!(
                    "grafana datasource database {} differs from postgres' {}",
                    d["jsonData"]["database"], pg["POSTGRES_DB"]
                ));
            }
            let user = d["user"].as_str().unwrap_or_default();
            if d["user"] == pg["POSTGRES_USER"] {
                errs.push(format!(
                    "grafana datasource logs in as {user}, the owner of the tables: use a read-only role"
                ));
            } else if !init.contains(&format!("create role {user} login"))
                || !init.contains("in role tickcast_reader")
            {
                errs.push(format!(
                    "grafana datasource user {user} is not made a member of tickcast_reader by the database's init scripts"
                ));
            }
            if d["secureJsonData"]["password"]
                .as_str()
                .is_some_and(|p| p.contains("POSTGRES_PASSWORD"))
            {
                errs.push("grafana datasource uses the owner's password".into());
            }
        }
    }
    errs
}

fn compose_text() -> String {
    std::fs::read_to_string(root().join("docker-compose.yml")).unwrap()
}

fn dockerfile_text() -> String {
    std::fs::read_to_string(root().join("Dockerfile")).unwrap()
}

#[test]
fn compose_file_is_consistent() {
    let errs = problems(&compose_text(), &dockerfile_text(), &root());
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
                good.replace(r#":8080:8080""#, r#":8080:8081""#),
                "api: publishes ${TICKCAST_PUBLISH_ADDR:-127.0.0.1}:8080:8081, but listens",
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
        (
            "a default database password",
            (
                good.replacen(
                    "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (see .env.example)}",
                    "${POSTGRES_PASSWORD:-tickcast}",
                    1,
                ),
                "POSTGRES_PASSWORD has a default or may be empty",
            ),
        ),
        (
            "a default Grafana admin password",
            (
                good.replace(
                    "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD (see .env.example)}",
                    "${GRAFANA_ADMIN_PASSWORD:-admin}",
                ),
                "GRAFANA_ADMIN_PASSWORD has a default or may be empty",
            ),
        ),
        (
            "a literal Grafana admin password",
            (
                good.replace(
                    "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD (see .env.example)}",
                    "admin",
                ),
                "grafana: the admin password is not required",
            ),
        ),
        (
            "anonymous Grafana",
            (
                good.replace(
                    "GF_AUTH_ANONYMOUS_ENABLED: \"false\"",
                    "GF_AUTH_ANONYMOUS_ENABLED: \"true\"",
                ),
                "grafana: anonymous access is not turned off",
            ),
        ),
        (
            "Grafana on every interface",
            (
                good.replace(
                    "\"${TICKCAST_PUBLISH_ADDR:-127.0.0.1}:3000:3000\"",
                    "\"3000:3000\"",
                ),
                "grafana: publishes 3000:3000 on every interface",
            ),
        ),
        (
            "Prometheus on 0.0.0.0",
            (
                good.replace(
                    "\"${TICKCAST_PUBLISH_ADDR:-127.0.0.1}:9090:9090\"",
                    "\"0.0.0.0:9090:9090\"",
                ),
                "prometheus: publishes 0.0.0.0:9090:9090 on every interface",
            ),
        ),
        (
            "the API on every interface by default",
            (
                good.replace(
                    "\"${TICKCAST_PUBLISH_ADDR:-127.0.0.1}:8080:8080\"",
                    "\"${TICKCAST_PUBLISH_ADDR:-0.0.0.0}:8080:8080\"",
                ),
                "api: publishes ${TICKCAST_PUBLISH_ADDR:-0.0.0.0}:8080:8080 on every interface",
            ),
        ),
    ]);
    for (what, (text, want)) in cases {
        assert_ne!(text, good, "{what}: the replacement did not apply");
        let errs = problems(&text, &dockerfile_text(), &root());
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{what}: expected an error containing {want:?}, got {errs:#?}"
        );
    }
}

#[test]
fn grafana_as_the_tables_owner_is_rejected() {
    let doc = yaml_to_json(&compose_text()).unwrap();
    let services = doc["services"].as_object().unwrap();
    let path = root().join("monitoring/grafana/provisioning/datasources/tickcast.yaml");
    let good = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        datasource_problems(services, std::slice::from_ref(&good), &root()),
        Vec::<String>::new()
    );
    let owner = good
        .replace("user: grafana_reader", "user: tickcast")
        .replace("${GRAFANA_DB_PASSWORD}", "${POSTGRES_PASSWORD}");
    assert_ne!(owner, good);
    let errs = datasource_problems(services, &[owner], &root());
    assert!(
        errs.iter()
            .any(|e| e.contains("logs in as tickcast, the owner of the tables")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("uses the owner's password")),
        "{errs:?}"
    );
    let stranger = good.replace("user: grafana_reader", "user: someone");
    let errs = datasource_problems(services, &[stranger], &root());
    assert!(
        errs.iter()
            .any(|e| e.contains("someone is not made a member of tickcast_reader")),
        "{errs:?}"
    );
}

/// The Dockerfile with its last two stages swapped (the GPU stage last, as it once was).
fn gpu_stage_last(dockerfile: &str) -> String {
    let (head, cpu) = dockerfile
        .split_once("\n# The CPU runtime, last")
        .expect("the CPU runtime stage");
    let (before, gpu) = head
        .split_once("\n# The forecaster on a GPU")
        .expect("the GPU stage");
    format!("{before}\n# The CPU runtime, last{cpu}\n# The forecaster on a GPU{gpu}")
}

#[test]
fn broken_images_are_rejected() {
    let (compose, docker) = (compose_text(), dockerfile_text());
    let cases: BTreeMap<&str, (String, String, &str)> = BTreeMap::from([
        (
            // The bug this guard once missed: with no target, every CPU service got the last
            // stage, the GPU one, whose ENV asks a CPU-only binary for `wgpu`.
            "GPU stage as the default image",
            (
                compose.replacen("  context: .\n  target: runtime\n", "  context: .\n", 1),
                gpu_stage_last(&docker),
                "forecast: LSTM device `wgpu` from the image's stage `runtime-gpu`, but \
                 tickcast:latest is built without the `wgpu` feature",
            ),
        ),
        (
            "GPU image built without the feature",
            (
                compose.replacen("      args:\n        FEATURES: wgpu\n", "", 1),
                docker.clone(),
                "forecast-gpu: LSTM device `wgpu` from the service, but tickcast:gpu is built \
                 without the `wgpu` feature",
            ),
        ),
        (
            "device flag the CPU build lacks",
            (
                compose.replacen(
                    "      TICKCAST_STAGES: forecast\n",
                    "      TICKCAST_STAGES: forecast\n      TICKCAST_LSTM_DEVICE: gpu\n",
                    1,
                ),
                docker.clone(),
                "forecast: LSTM device `gpu` from the service, but tickcast:latest",
            ),
        ),
        (
            "unknown device",
            (
                compose.replacen(
                    "      TICKCAST_STAGES: forecast\n",
                    "      TICKCAST_STAGES: forecast\n      TICKCAST_LSTM_DEVICE: cuda\n",
                    1,
                ),
                docker.clone(),
                "forecast: TICKCAST_LSTM_DEVICE from the service: unknown device `cuda`",
            ),
        ),
        (
            "target the Dockerfile lacks",
            (
                compose.replacen("  target: runtime\n", "  target: runtime-cpu\n", 1),
                docker.clone(),
                "builds target `runtime-cpu`, which the Dockerfile has no stage named",
            ),
        ),
        (
            "one image name, two builds",
            (
                compose.replacen(
                    "    image: tickcast:latest\n    build: *tickcast-build\n",
                    "    image: tickcast:latest\n    build:\n      context: .\n      target: runtime-gpu\n",
                    1,
                ),
                docker.clone(),
                "another service from `",
            ),
        ),
        (
            "image nobody builds",
            (
                compose.replace("    image: tickcast:latest\n    build: *tickcast-build\n    command: [\"migrate\"]", "    image: tickcast:edge\n    command: [\"migrate\"]"),
                docker.clone(),
                "migrate: no service builds tickcast:edge",
            ),
        ),
        (
            "variable the image sets that the subcommand does not read",
            (
                compose.clone(),
                docker.replacen("ENV RUST_LOG=info", "ENV RUST_LOG=info TICKCAST_STAGE=all", 1),
                "topics: `tickcast topics` does not read TICKCAST_STAGE (set by the image's stage `runtime`)",
            ),
        ),
    ]);
    for (what, (text, dockerfile, want)) in cases {
        assert!(
            text != compose || dockerfile != docker,
            "{what}: the replacement did not apply"
        );
        let errs = problems(&text, &dockerfile, &root());
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{what}: expected an error containing {want:?}, got {errs:#?}"
        );
    }
}

#[test]
fn dockerfile_stages_are_read_as_docker_reads_them() {
    let st = stages(&dockerfile_text());
    let names: Vec<&str> = st.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["build", "runtime-base", "runtime-gpu", "runtime"]);
    assert_eq!(st[2].from, "runtime-base");
    let gpu = stage_env(&st, "runtime-gpu");
    assert_eq!(
        gpu.get("TICKCAST_LSTM_DEVICE").map(String::as_str),
        Some("wgpu")
    );
    assert_eq!(gpu.get("RUST_LOG").map(String::as_str), Some("info"));
    assert_eq!(
        gpu.get("NVIDIA_DRIVER_CAPABILITIES").map(String::as_str),
        Some("compute,utility,graphics")
    );
    let cpu = stage_env(&st, "runtime");
    assert_eq!(
        cpu.keys().collect::<Vec<_>>(),
        ["RUST_LOG"],
        "the CPU image sets {cpu:?}"
    );
    // Both ENV forms, quoting and continuation lines.
    let odd = stages("FROM a AS one\nENV A 1 2\nENV B=\"x y\" \\\n    C=3\nFROM one\nENV C=4\n");
    assert_eq!(odd[1].name, "1");
    let env = stage_env(&odd, "1");
    assert_eq!(
        env.into_iter().collect::<Vec<_>>(),
        [("A", "1 2"), ("B", "x y"), ("C", "4")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
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
    // A plain `docker build .` gives the CPU runtime.
    assert_eq!(stages(&d).last().map(|s| s.name.as_str()), Some("runtime"));
}

#[test]
fn docs_configuration_reference_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("config-reference")
        .output()
        .expect("run tickcast config-reference");
    assert!(out.status.success());
    let want = String::from_utf8(out.stdout).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    assert_eq!(
        doc.matches("<!-- config-reference:start -->").count(),
        1,
        "docs/configuration.md must hold exactly one config-reference block"
    );
    let got = doc
        .split("<!-- config-reference:start -->\n")
        .nth(1)
        .and_then(|s| s.split("<!-- config-reference:end -->").next())
        .expect("docs/configuration.md has the config-reference block");
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .find(|(a, b)| a != b)
            .map_or("(a line missing or extra)".to_string(), |(a, b)| {
                format!("docs/configuration.md: {a}\nbinary: {b}")
            });
        panic!(
            "docs/configuration.md's configuration reference is stale (paste the output of \
             `cargo run -- config-reference` between its config-reference markers); first \
             difference:\n{first}"
        );
    }
}
