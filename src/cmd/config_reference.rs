//! `tickcast config-reference`: every subcommand's settings (flag, environment variable,
//! default, help), read from the command-line definition itself so it can never drift from
//! the code. The compose guard test checks `docker-compose.yml` against its JSON form.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

#[derive(Debug, Clone, Args)]
pub struct ConfigReferenceArgs {
    /// One JSON object per setting instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
}

/// One setting of one subcommand.
#[derive(Debug, Serialize)]
pub struct Setting {
    pub command: String,
    /// `--flag`, or the positional name in angle brackets.
    pub flag: String,
    pub env: Option<String>,
    pub default: Option<String>,
    pub help: String,
}

/// Settings read outside the command line, by every subcommand.
const GLOBAL_ENV: &[(&str, &str, &str)] = &[(
    "RUST_LOG",
    "info",
    "log filter (tracing's EnvFilter syntax, e.g. `info,tickcast=debug`)",
)];

/// Every setting of `cli`'s subcommands, in their order, after the global ones.
pub fn settings(cli: &clap::Command) -> Vec<Setting> {
    let mut out = Vec::new();
    for (name, _, help) in GLOBAL_ENV {
        out.push(Setting {
            command: "*".into(),
            flag: String::new(),
            env: Some((*name).into()),
            default: Some(GLOBAL_ENV[0].1.into()),
            help: (*help).into(),
        });
    }
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let flag = match arg.get_long() {
                Some(l) => format!("--{l}"),
                None => format!("<{id}>"),
            };
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>();
            out.push(Setting {
                command: sub.get_name().to_string(),
                flag,
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                default: Some(default.join(",")).filter(|d| !d.is_empty()),
                help: arg
                    .get_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default()
                    .replace('\n', " "),
            });
        }
    }
    out
}

/// The reference of `cli` as a Markdown table, or as JSON lines.
pub fn render(cli: &clap::Command, json: bool) -> String {
    let mut s = String::new();
    if json {
        for x in settings(cli) {
            s.push_str(&serde_json::to_string(&x).unwrap_or_default());
            s.push('\n');
        }
        return s;
    }
    s.push_str(
        "| command | flag | environment | default | what |\n| --- | --- | --- | --- | --- |\n",
    );
    for x in settings(cli) {
        let cell = |v: &Option<String>| v.as_deref().map_or("".into(), |v| format!("`{v}`"));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            x.command,
            if x.flag.is_empty() {
                String::new()
            } else {
                format!("`{}`", x.flag)
            },
            cell(&x.env),
            cell(&x.default),
            x.help.replace('|', "\\|")
        ));
    }
    s
}

/// Prints the reference of `cli`: the command line as defined, not as the `_FILE` secrets
/// filled it in (their values would show as defaults).
pub fn run(args: ConfigReferenceArgs, cli: &clap::Command) -> Result<()> {
    print!("{}", render(cli, args.json));
    Ok(())
}
