//! Settings from outside the command line, shared by the subcommands: the config file
//! ([`file`]: librdkafka properties, `tickcast ingest`'s feeds) and the `X_FILE` secret files
//! ([`secret_files`]). Flags and the environment win over both.

pub mod file;
pub mod secret_files;
