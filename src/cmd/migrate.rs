//! `tickcast migrate`: apply the database migrations and exit.

use anyhow::Result;
use tickcast_store as store;

use crate::args::DbArgs;

pub async fn run(db: DbArgs) -> Result<()> {
    let s = store::open(&db.database_url).await?;
    println!("migrations applied ({})", s.backend());
    Ok(())
}
