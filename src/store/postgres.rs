//! The PostgreSQL backend: several replicas sharing one queue.

use super::*;

pub async fn open(_url: &str, _opts: Options) -> Result<Arc<dyn Store>> {
    Err(StoreError::Config(
        "postgres:// is not supported yet".into(),
    ))
}
