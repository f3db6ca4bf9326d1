//! The config file (`--config`, `TICKCAST_CONFIG`; TOML): librdkafka properties for every
//! Kafka client, and the feeds `tickcast ingest` streams. Flags and the environment win over it.
//!
//! ```toml
//! [kafka]                      # any librdkafka property, by its own name
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "tickcast"
//! "sasl.password_file" = "/run/secrets/kafka-password"   # NAME_file: the value is the file's
//! "ssl.ca.location" = "/etc/tickcast/ca.pem"
//!
//! [ingest]
//! stale_after_secs = 30
//!
//! [[ingest.feeds]]
//! exchange = "binance"
//! symbols = ["BTC-USDT", "ETH-USDT"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// librdkafka properties for every Kafka client.
    #[serde(default)]
    pub kafka: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub ingest: IngestSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub stale_after_secs: Option<u64>,
    pub backfill: Option<bool>,
    #[serde(default)]
    pub feeds: Vec<FeedSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    pub exchange: String,
    pub symbols: Vec<String>,
    pub url: Option<String>,
    pub rest_url: Option<String>,
}

/// Reads the config file, if any.
pub fn load(path: Option<&PathBuf>) -> Result<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// The librdkafka properties for every client: the file's `[kafka]` table, then the
/// environment, then `--kafka-property` flags (a later source wins for the same name).
pub fn kafka_properties(
    file: &ConfigFile,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[KafkaProperty],
) -> Result<Vec<(String, String)>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &file.kafka {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "config file [kafka]: `{key}` must be a string, number or boolean, not {}",
                other.type_str()
            ),
        };
        match key.strip_suffix("_file") {
            Some(name) => out.insert(
                name.to_string(),
                read_secret(Path::new(&text), &format!("[kafka] {key}"))?,
            ),
            None => out.insert(key.clone(), text),
        };
    }
    out.extend(tickcast_core::bus::properties_from_env(env)?);
    for p in flags {
        out.insert(p.name.clone(), p.value.clone());
    }
    Ok(out.into_iter().collect())
}

pub use tickcast_core::bus::read_secret;

/// `--kafka-property NAME=VALUE`; a secret's value is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for KafkaProperty {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| "expected NAME=VALUE, e.g. security.protocol=SASL_SSL".to_string())?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            return Err(format!("`{name}` is not a librdkafka property name"));
        }
        Ok(Self {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

impl std::fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = if tickcast_core::bus::is_secret_property(&self.name) {
            "***"
        } else {
            &self.value
        };
        write!(f, "{}={v}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_from_the_file_the_environment_and_flags_in_that_order() {
        let dir = std::env::temp_dir().join(format!("tickcast-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("pw");
        std::fs::write(&secret, "s3cret-from-file\n").unwrap();
        let file: ConfigFile = toml::from_str(&format!(
            "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.username\" = \"file-user\"\n\"socket.timeout.ms\" = 5000\n\"sasl.password_file\" = \"{}\"\n",
            secret.display()
        ))
        .unwrap();
        let env = vec![
            (
                "TICKCAST_KAFKA_PROPERTY_SASL_USERNAME".to_string(),
                "env-user".to_string(),
            ),
            (
                "TICKCAST_KAFKA_PROPERTY_SSL_CA_LOCATION".to_string(),
                "/ca.pem".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let flags = vec![
            "sasl.mechanism=SCRAM-SHA-512"
                .parse::<KafkaProperty>()
                .unwrap(),
        ];
        let got = kafka_properties(&file, env, &flags).unwrap();
        let want: Vec<(String, String)> = [
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "s3cret-from-file"),
            ("sasl.username", "env-user"),
            ("security.protocol", "SASL_SSL"),
            ("socket.timeout.ms", "5000"),
            ("ssl.ca.location", "/ca.pem"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);

        let env = vec![(
            "TICKCAST_KAFKA_PROPERTY_SASL_PASSWORD_FILE".to_string(),
            secret.display().to_string(),
        )];
        let got = kafka_properties(&ConfigFile::default(), env, &[]).unwrap();
        assert_eq!(
            got,
            vec![("sasl.password".to_string(), "s3cret-from-file".to_string())]
        );

        let env = vec![(
            "TICKCAST_KAFKA_PROPERTY_SASL_PASSWORD_FILE".to_string(),
            "/nonexistent/pw".to_string(),
        )];
        let err = kafka_properties(&ConfigFile::default(), env, &[]).unwrap_err();
        assert!(
            format!("{err:#}")
                .contains("TICKCAST_KAFKA_PROPERTY_SASL_PASSWORD_FILE: reading /nonexistent/pw"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_properties_are_not_printed() {
        let p: KafkaProperty = "sasl.password=hunter2hunter2".parse().unwrap();
        assert_eq!(format!("{p:?}"), "sasl.password=***");
        let p: KafkaProperty = "ssl.key.password=k".parse().unwrap();
        assert_eq!(format!("{p:?}"), "ssl.key.password=***");
        let p: KafkaProperty = "ssl.ca.location=/ca.pem".parse().unwrap();
        assert_eq!(format!("{p:?}"), "ssl.ca.location=/ca.pem");
        assert!("novalue".parse::<KafkaProperty>().is_err());
        assert!("bad name=x".parse::<KafkaProperty>().is_err());
    }
}
