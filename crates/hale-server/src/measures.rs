//! The built-in quality measures (`hale_cds::measures::MEASURES`) as Measure resources
//! of the store, so that a client finds them (`GET /fhir/Measure`, `Measure/[id]`) and
//! the canonical a MeasureReport names resolves to one: `hale cds install-measures`,
//! and the demo on every start. Each is written (as `Measure/[id]`, through the
//! repository given, so audited) only when absent, deleted or different from what this
//! build describes; running it again changes nothing.

use hale_repository::{Error, Repository};
use serde_json::Value;

/// What [`install`] did: the measures written, and how many were already as described.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub written: Vec<&'static str>,
    pub unchanged: usize,
}

/// Writes each built-in measure's Measure resource that is missing or differs.
pub async fn install(repo: &Repository) -> Result<Installed, Error> {
    let ty = hale_repository::resource_type("Measure")?;
    let mut done = Installed::default();
    for m in hale_cds::measures::MEASURES {
        let id = hale_repository::resource_id(m.id)?;
        let wanted = m.resource();
        let current: Option<Value> = match repo.read(&ty, &id).await {
            Ok(stored) => stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()),
            Err(Error::NotFound(_) | Error::Gone(..)) => None,
            Err(e) => return Err(e),
        };
        let same = current.is_some_and(|mut c| {
            if let Some(o) = c.as_object_mut() {
                o.remove("meta");
            }
            c == wanted
        });
        if same {
            done.unchanged += 1;
        } else {
            repo.update(&ty, &id, wanted, None).await?;
            done.written.push(m.id);
        }
    }
    Ok(done)
}
