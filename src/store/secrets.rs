//! Server-wide secrets stored in the database.

use sqlx::PgPool;

/// The stored secret `name`, created from `generate` on first use. Concurrent first uses agree
/// on one value: the insert is a no-op when another process won the race, and the read that
/// follows (a new snapshot) sees the winner's value.
pub async fn get_or_create(
    pool: &PgPool,
    name: &str,
    generate: impl FnOnce() -> Vec<u8>,
) -> sqlx::Result<Vec<u8>> {
    sqlx::query(
        "insert into server_secrets (name, value) values ($1, $2) on conflict (name) do nothing",
    )
    .bind(name)
    .bind(generate())
    .execute(pool)
    .await?;
    sqlx::query_scalar("select value from server_secrets where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}
