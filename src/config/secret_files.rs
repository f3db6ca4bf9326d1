//! Secrets from files: for each secret setting read from the environment, `X_FILE` names a
//! file (a Docker or Kubernetes secret) whose text, without surrounding whitespace, is used when
//! `X` is unset. Giving both is an error. The API token's twin is a flag of its own
//! (`--api-token-file`, `TICKCAST_API_TOKEN_FILE`); librdkafka properties have their own `_FILE`
//! form ([`tickcast_core::bus::PROPERTY_ENV`]); a Postgres password alone comes from
//! libpq's password file (`PGPASSFILE`, `~/.pgpass`), which the driver reads.

use anyhow::{Result, bail};

/// The secret settings that have a `_FILE` twin here.
pub const SECRET_VARS: [&str; 2] = [
    // The whole database URL, password included.
    "DATABASE_URL",
    "TICKCAST_ALERT_WEBHOOK_SECRET",
];

/// The command line with each `X_FILE`'s secret as the default of the arguments `X` feeds
/// (flags still win).
pub fn with_secret_files(cmd: clap::Command) -> Result<clap::Command> {
    let found = resolve(|k| std::env::var_os(k))?;
    Ok(apply(cmd, &found))
}

fn apply(cmd: clap::Command, found: &[(&'static str, String)]) -> clap::Command {
    let found = found.to_vec();
    let inner = found.clone();
    cmd.mut_args(move |a| {
        let env = a.get_env().and_then(|e| e.to_str()).map(str::to_string);
        match env.and_then(|e| found.iter().find(|(v, _)| *v == e)) {
            // clap keeps defaults as `&'static str`: the secret lives as long as the process.
            Some((_, value)) => a
                .default_value(&*value.clone().leak())
                .hide_default_value(true)
                .required(false),
            None => a,
        }
    })
    .mut_subcommands(move |sub| apply(sub, &inner))
}

/// The secrets the `_FILE` variables name, given a way to read the environment.
pub fn resolve(
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for var in SECRET_VARS {
        let file_var = format!("{var}_FILE");
        let Some(path) = get(&file_var) else {
            continue;
        };
        if get(var).is_some() {
            bail!("{var} and {file_var} are both set: give one");
        }
        let value = crate::config::file::read_secret(std::path::Path::new(&path), &file_var)?;
        out.push((var, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, OsString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect()
    }

    #[test]
    fn file_twins_are_read_and_conflicts_refused() {
        let dir = std::env::temp_dir().join(format!("tickcast-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "  a-secret-of-some-length\n").unwrap();
        let url = dir.join("url");
        std::fs::write(&url, "postgres://u:p@h/db\n").unwrap();
        let e = env(&[
            (
                "TICKCAST_ALERT_WEBHOOK_SECRET_FILE",
                secret.to_str().unwrap(),
            ),
            ("DATABASE_URL_FILE", url.to_str().unwrap()),
        ]);
        let got = resolve(|k| e.get(k).cloned()).unwrap();
        assert_eq!(
            got,
            vec![
                ("DATABASE_URL", "postgres://u:p@h/db".to_string()),
                (
                    "TICKCAST_ALERT_WEBHOOK_SECRET",
                    "a-secret-of-some-length".to_string()
                ),
            ]
        );

        let e = env(&[
            ("DATABASE_URL", "x"),
            ("DATABASE_URL_FILE", url.to_str().unwrap()),
        ]);
        let err = resolve(|k| e.get(k).cloned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL and DATABASE_URL_FILE are both set: give one"
        );

        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = env(&[(
            "TICKCAST_ALERT_WEBHOOK_SECRET_FILE",
            empty.to_str().unwrap(),
        )]);
        let err = resolve(|k| e.get(k).cloned()).unwrap_err();
        assert!(err.to_string().ends_with("is empty"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_secret_file_fills_the_arguments_that_read_its_variable() {
        use clap::{Arg, Command};
        // A variable no environment sets, on an argument of a subcommand.
        let var = "TICKCAST_TEST_SECRET_NOBODY_SETS";
        let cmd = Command::new("t").subcommand(
            Command::new("sub").arg(Arg::new("url").long("url").env(var).required(true)),
        );
        let found = vec![(var, "sqlite:from-file.db".to_string())];
        let m = apply(cmd.clone(), &found)
            .try_get_matches_from(["t", "sub"])
            .unwrap();
        let sub = m.subcommand_matches("sub").unwrap();
        assert_eq!(sub.get_one::<String>("url").unwrap(), "sqlite:from-file.db");
        // A flag still wins.
        let m = apply(cmd.clone(), &found)
            .try_get_matches_from(["t", "sub", "--url", "sqlite:flag.db"])
            .unwrap();
        let sub = m.subcommand_matches("sub").unwrap();
        assert_eq!(sub.get_one::<String>("url").unwrap(), "sqlite:flag.db");
        // And the secret is not shown in help.
        let help = apply(cmd, &found)
            .find_subcommand_mut("sub")
            .unwrap()
            .render_help()
            .to_string();
        assert!(!help.contains("from-file"), "{help}");
    }
}
