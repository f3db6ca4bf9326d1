//! No code: this crate only pins dependency features for the test build (see its Cargo.toml).
