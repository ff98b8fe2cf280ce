//! Writes the OpenAPI document to `openapi/openapi.json` (or the path given), so the committed
//! file follows the code. `tests/openapi.rs` fails when they drift apart.

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json").to_owned());
    std::fs::write(&path, baton::http::openapi_json())?;
    eprintln!("wrote {path}");
    Ok(())
}
