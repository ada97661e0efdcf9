//! The power-loss layers of a stack, shared by the backends: which service's
//! directories sit on which [`Layer`], mounted (journaled first), aborted at a
//! power cut, rolled back to their durable state and mounted again, unmounted at
//! teardown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::StackError;
use crate::durable::{DurableError, IoFault, Layer, Model};
use crate::journal::Journal;

/// The layers of one stack, `(service, layer)`.
#[derive(Default)]
pub struct PowerLayers {
    layers: Mutex<Vec<(String, Layer)>>,
}

impl std::fmt::Debug for PowerLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layers = self.lock();
        f.debug_list()
            .entries(layers.iter().map(|(s, l)| (s, l.mountpoint())))
            .finish()
    }
}

impl PowerLayers {
    fn lock(&self) -> MutexGuard<'_, Vec<(String, Layer)>> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mounts a layer of `model` over `dir` (created if missing) for `service`
    /// (`key` names the setting in messages),
    /// recorded in `journal` before it exists. A directory already on a layer of
    /// the same service is left as it is; one of another service, or nested in or
    /// around another layer, is refused. Returns the canonical directory.
    pub fn mount(
        &self,
        service: &str,
        key: &str,
        dir: &Path,
        model: Model,
        journal: Option<&Journal>,
    ) -> Result<PathBuf, StackError> {
        let failed = |message: String| StackError::StartFailed {
            service: service.to_string(),
            message: format!("{key} {}: {message}", dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let dir = dir.canonicalize().map_err(|e| failed(e.to_string()))?;
        let mut layers = self.lock();
        if let Some((owner, _)) = layers.iter().find(|(_, l)| l.mountpoint() == dir.as_path()) {
            if owner == service {
                return Ok(dir);
            }
            return Err(failed(format!(
                "already on the power-loss layer of service `{owner}`: a directory belongs to one service"
            )));
        }
        if let Some((owner, l)) = layers
            .iter()
            .find(|(_, l)| dir.starts_with(l.mountpoint()) || l.mountpoint().starts_with(&dir))
        {
            return Err(failed(format!(
                "overlaps {} (on the layer of `{owner}`): the layers cannot nest",
                l.mountpoint().display()
            )));
        }
        if let Some(j) = journal {
            j.mounted(&dir, &dir).map_err(|e| failed(e.to_string()))?;
        }
        let layer = Layer::mount(&dir, &dir, model)
            .map_err(|e| failed(format!("the power-loss layer cannot mount: {e}")))?;
        layers.push((service.to_string(), layer));
        Ok(dir)
    }

    /// The services with a layer.
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lock().iter().map(|(s, _)| s.clone()).collect();
        out.dedup();
        out
    }

    /// Whether `service` has a layer.
    pub fn has(&self, service: &str) -> bool {
        self.lock().iter().any(|(s, _)| s == service)
    }

    /// Makes everything on every layer durable now.
    pub fn checkpoint(&self) {
        for (_, layer) in self.lock().iter() {
            layer.checkpoint();
        }
    }

    /// Puts a disk fault in force on the layers of `services` (`None`: lifts it);
    /// one line per layer whose fault is replaced, saying what it matched. A
    /// service without a layer is refused, `why` saying how one gets a layer.
    pub fn set_io(
        &self,
        services: &[String],
        fault: Option<&IoFault>,
        why: &str,
    ) -> Result<Vec<String>, StackError> {
        let layers = self.lock();
        if let Some(s) = services
            .iter()
            .find(|s| !layers.iter().any(|(o, _)| o == *s))
        {
            return Err(StackError::Command {
                what: format!("disk fault of {s}"),
                message: format!("{why}: nothing of it is on the power-loss layer"),
            });
        }
        let mut lines = Vec::new();
        for (service, layer) in layers.iter().filter(|(s, _)| services.contains(s)) {
            let had = layer.io();
            let hits = layer.set_io(fault.cloned());
            if let Some(had) = had {
                lines.push(format!(
                    "{service} {}: {}: {}",
                    layer.mountpoint().display(),
                    had.describe(),
                    hits.summary()
                ));
            }
        }
        Ok(lines)
    }

    /// Aborts the connections of the layers of `services` (everything in flight and
    /// to come fails). Every layer is tried; the first failure is returned.
    pub fn abort(&self, services: &[String]) -> Result<(), StackError> {
        let mut first = None;
        for (_, layer) in self.lock().iter().filter(|(s, _)| services.contains(s)) {
            if let Err(e) = layer.abort() {
                first.get_or_insert(StackError::Command {
                    what: format!(
                        "aborting the power-loss layer at {}",
                        layer.mountpoint().display()
                    ),
                    message: e.to_string(),
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Those of `services` with a layer cut and not yet rolled back (aborted, or
    /// unmounted by a rollback that did not finish).
    pub fn cut(&self, services: &[String]) -> Vec<String> {
        let layers = self.lock();
        services
            .iter()
            .filter(|s| {
                layers
                    .iter()
                    .any(|(o, l)| o == *s && (l.is_aborted() || !l.is_mounted()))
            })
            .cloned()
            .collect()
    }

    /// Rolls the cut layers of `services` back to their durable state and mounts
    /// them again; one line per layer saying what was lost. The services' processes
    /// must be gone.
    pub fn roll_back(&self, services: &[String]) -> Result<Vec<String>, StackError> {
        let mut lost = Vec::new();
        let mut layers = self.lock();
        for (service, layer) in layers.iter_mut().filter(|(s, _)| services.contains(s)) {
            if layer.is_mounted() && !layer.is_aborted() {
                continue; // not cut (heal after a power-on that completed)
            }
            let mountpoint = layer.mountpoint().display().to_string();
            let failed = |what: &str, e: DurableError| StackError::Command {
                what: format!("{what} the power-loss layer of {service} at {mountpoint}"),
                message: e.to_string(),
            };
            let loss = layer
                .lose_unsynced()
                .map_err(|e| failed("rolling back", e))?;
            layer.remount().map_err(|e| failed("remounting", e))?;
            lost.push(format!("{service} {mountpoint}: {}", loss.summary()));
        }
        Ok(lost)
    }

    /// [`PowerLayers::roll_back`] on a blocking thread: the rollback moves files and
    /// must not hold a runtime worker (nor the layers' lock on one).
    pub async fn roll_back_off_runtime(
        self: &Arc<Self>,
        services: &[String],
    ) -> Result<Vec<String>, StackError> {
        let me = Arc::clone(self);
        let services = services.to_vec();
        tokio::task::spawn_blocking(move || me.roll_back(&services))
            .await
            .map_err(|e| StackError::Command {
                what: "rolling back the power-loss layers".into(),
                message: e.to_string(),
            })?
    }

    /// [`PowerLayers::set_io`] on a blocking thread: it takes each layer's lock,
    /// which a FUSE thread holds while its operation reaches the backing
    /// directory (slow under load), so not on a runtime worker.
    pub async fn set_io_off_runtime(
        self: &Arc<Self>,
        services: &[String],
        fault: Option<&IoFault>,
        why: &'static str,
    ) -> Result<Vec<String>, StackError> {
        let me = Arc::clone(self);
        let (services, fault) = (services.to_vec(), fault.cloned());
        tokio::task::spawn_blocking(move || me.set_io(&services, fault.as_ref(), why))
            .await
            .map_err(|e| StackError::Command {
                what: "setting the disk fault of the power-loss layers".into(),
                message: e.to_string(),
            })?
    }

    /// The end of a power-on, once the cut services' processes are gone: rolls
    /// back the layers of `cut`, then starts each of `services` with `start`;
    /// says what was lost.
    pub async fn roll_back_and_start<F, Fut>(
        self: &Arc<Self>,
        cut: &[String],
        services: &[String],
        start: F,
    ) -> Result<String, StackError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), StackError>>,
    {
        let lost = self.roll_back_off_runtime(cut).await?;
        for s in services {
            start(s.clone()).await?;
        }
        Ok(if lost.is_empty() {
            "nothing to roll back".into()
        } else {
            lost.join("; ")
        })
    }

    /// Unmounts every layer (after the services are stopped), each recorded as gone
    /// in `journal`; every layer is tried, the first failure returned.
    pub fn unmount_all(&self, journal: Option<&Arc<Journal>>) -> Result<(), StackError> {
        let mut first_error = None;
        let layers: Vec<_> = self.lock().drain(..).collect();
        for (service, mut layer) in layers {
            let dir = layer.mountpoint().to_path_buf();
            match layer.unmount() {
                Ok(()) => {
                    if let Some(j) = journal {
                        let _ = j.unmounted(&dir);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(StackError::Command {
                        what: format!("unmounting the power-loss layer of {service}"),
                        message: e.to_string(),
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_belongs_to_one_service_and_layers_never_nest() {
        let root = tempfile::tempdir().unwrap();
        let (a, sub, b) = (
            root.path().join("a"),
            root.path().join("a/sub"),
            root.path().join("b"),
        );
        let layers = PowerLayers::default();
        let m = Model::PosixStrict;
        let dir = layers.mount("db", "durable-dirs", &a, m, None).unwrap();
        assert_eq!(dir, a.canonicalize().unwrap());
        layers
            .mount("db", "durable-dirs", &a, m, None)
            .expect("the same directory of the same service is left as it is");
        let err = |r: Result<PathBuf, StackError>| r.expect_err("refused").to_string();
        let shared = err(layers.mount("app", "durable-dirs", &a, m, None));
        assert!(
            shared.contains("already on the power-loss layer of service `db`"),
            "{shared}"
        );
        let nested = err(layers.mount("app", "durable-dirs", &sub, m, None));
        assert!(nested.contains("cannot nest"), "{nested}");
        let nested_same = err(layers.mount("db", "durable-dirs", &sub, m, None));
        assert!(nested_same.contains("cannot nest"), "{nested_same}");
        let around = err(layers.mount("app", "durable-dirs", root.path(), m, None));
        assert!(around.contains("cannot nest"), "{around}");
        layers
            .mount("app", "durable-dirs", &b, m, None)
            .expect("a sibling directory is fine");
        assert_eq!(layers.services(), vec!["db".to_string(), "app".to_string()]);
        let unknown = layers
            .set_io(&["web".to_string()], None, "why")
            .expect_err("no layer");
        assert!(unknown.to_string().contains("web"), "{unknown}");
        layers.unmount_all(None).unwrap();
        assert!(!crate::durable::mounts()
            .iter()
            .any(|p| p.starts_with(root.path())));
    }
}
