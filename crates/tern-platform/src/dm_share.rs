//! Device management on a node of a cluster (docs/cluster.md): its state is shared through
//! its files. The cluster mirrors each organization's `platform/dm/<org>.json` with the
//! other nodes (tern-cluster's `platform` module, bucket `PLATFORM_DM`); this module keeps
//! the node's state in memory and its files in step, every [`crate::dm_task`] sync (250 ms):
//! an organization changed here is written to its file; a file changed by the mirror (another
//! node's version) is read back, merged first with this node's unwritten changes (a
//! three-way merge against the version last read or written, the cluster's [`Merge`]), the
//! merged version written for the mirror to share. Each organization is handled under the
//! lock the mirror takes to write its file, so neither undoes the other.
//!
//! Who changes what: a device's messages are handled on the node it is connected to (its
//! management state, and its part of requests); requests are made, cancelled and timed out
//! on any node. A device's answer to a request made on another node can arrive before the
//! request has: [`Dm::awaits`] tells the task to hold it back (with the device's later
//! messages) until it has.

use crate::dm::{Dm, DmStoreError, OrgDm, Step, WRITE_BYTES_PER_SECOND};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A three-way merge of JSON documents (base, this node's, another node's; `None` is no
/// document) that keeps both sides' changes to different members and takes the other
/// node's where both changed the same one.
pub type Merge = fn(Option<&Value>, Option<&Value>, Option<&Value>) -> Option<Value>;

/// What a shared [`Dm`] keeps besides its state.
#[derive(Debug)]
pub struct Sharing {
    merge: Merge,
    /// Per organization, the file as this node last read or wrote it.
    base: Mutex<HashMap<String, Known>>,
}

/// A file as a node last read or wrote it.
#[derive(Debug, Clone, Default)]
struct Known {
    /// Its document (`None`: no file).
    doc: Option<Value>,
    /// Its stamp then: unchanged, the file is not read again.
    stamp: Option<Stamp>,
}

/// What tells a file's versions apart without reading it: inode (each version is a new
/// file renamed over the old), length and modification time.
type Stamp = (u64, u64, Option<std::time::SystemTime>);

fn stamp_of(path: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()))
}

/// Checks that a device management file (from another node) can be loaded.
pub fn check_file(_org: &str, body: &[u8]) -> Result<(), String> {
    crate::dm_store::decode(body).map(|_| ())
}

/// Whether `o`'s last write was too recent for its size ([`WRITE_BYTES_PER_SECOND`]).
fn early(o: &OrgDm, now: Instant) -> bool {
    o.written.is_some_and(|(at, bytes)| {
        let pause = Duration::from_secs_f64(bytes as f64 / WRITE_BYTES_PER_SECOND as f64);
        now.saturating_duration_since(at) < pause
    })
}

impl Dm {
    /// Makes this state a node's share of the cluster's: from now on [`Dm::flush`] and
    /// [`Dm::flush_due`] also read back what the cluster wrote to the files, merged with
    /// `merge`, and no message is taken as undelivered (the device may be on another node).
    pub fn share(&self, merge: Merge) {
        // The files as [`Dm::open`] read them: a change made here before the first sync is
        // a change from them.
        let mut base = HashMap::new();
        for (org, path) in crate::org_files::list(&self.dir).unwrap_or_default() {
            let doc = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if doc.is_some() {
                base.insert(
                    org,
                    Known {
                        doc,
                        stamp: stamp_of(&path),
                    },
                );
            }
        }
        let _ = self.shared.set(Sharing {
            merge,
            base: Mutex::new(base),
        });
    }

    /// Whether [`Dm::share`] was called.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// The reqId of a device's answer to a request (`iotdevice-1/<tail>` with `tail`
    /// `response`), if it is one and has one, and answers a message that some request
    /// waits for (not an untracked one, [`crate::dm_wire::is_untracked`]).
    pub fn answer_req_id(tail: &str, payload: &[u8]) -> Option<String> {
        if tail != crate::dm_wire::tail::RESPONSE {
            return None;
        }
        let req_id = crate::dm_wire::parse(payload).ok()?.req_id?;
        (!crate::dm_wire::is_untracked(&req_id)).then_some(req_id)
    }

    /// Whether device `type_id`/`device_id`'s request in progress, as known here, waits
    /// for an answer to `req_id` (a device's answer that it does not wait for may be to a
    /// request made on another node that has not arrived yet).
    pub fn awaits(&self, org: &str, type_id: &str, device_id: &str, req_id: &str) -> bool {
        let key = (type_id.to_string(), device_id.to_string());
        let orgs = self.orgs.lock();
        let pending = orgs.get(org).and_then(|o| {
            let id = o.devices.get(&key)?.active.as_ref()?;
            o.requests.get(id)?.run(&key)?.pending.clone()
        });
        pending.as_deref() == Some(req_id)
    }

    /// Completes reboots and factory resets whose device, after its 202, connected again
    /// and managed itself on another node: that node did not know the 202 yet (it came
    /// through the files), so its manage did not complete them. The rule is the single
    /// node's one by the clock: a connection after the 202, then a manage.
    pub fn complete_moved_restarts(&self, now_ms: u64) {
        let mut orgs = self.orgs.lock();
        for o in orgs.values_mut() {
            for r in o.requests.values_mut() {
                let mut changed = false;
                for run in r.runs.iter_mut().filter(|run| run.step == Step::Restart) {
                    let Some(dev) = o.devices.get_mut(&run.key()) else {
                        continue;
                    };
                    if dev.connected_ms > run.updated_ms && dev.last_manage_ms >= dev.connected_ms {
                        crate::dm_requests::finish(run, now_ms, 0, None);
                        if dev.active.as_deref() == Some(r.id.as_str()) {
                            dev.active = None;
                        }
                        changed = true;
                    }
                }
                if changed {
                    r.updated_ms = now_ms;
                    o.dirty = true;
                }
            }
        }
    }

    /// Writes the organizations changed here (`all`, or those due) and reads back those
    /// whose files another node's version replaced (merged with unwritten changes).
    pub(crate) fn sync(&self, all: bool) -> Result<(), DmStoreError> {
        let Some(sharing) = self.shared.get() else {
            return Ok(());
        };
        let _writing = self.writing.lock();
        let mut names: BTreeSet<String> = crate::org_files::list(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(org, _)| org)
            .collect();
        names.extend(self.orgs.lock().keys().cloned());
        names.extend(sharing.base.lock().keys().cloned());
        let mut first = Ok(());
        for org in names {
            if let Err(e) = self.sync_org(sharing, &org, all) {
                tracing::warn!("device management of {org} not saved: {e}");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        self.orgs
            .lock()
            .retain(|_, o| o.dirty || !o.devices.is_empty() || !o.requests.is_empty() || !o.bundles.is_empty());
        first
    }

    fn sync_org(&self, sharing: &Sharing, org: &str, all: bool) -> Result<(), DmStoreError> {
        let path = self.dir.join(format!("{org}.json"));
        let dirty = self.orgs.lock().get(org).is_some_and(|o| o.dirty);
        let stamp = stamp_of(&path);
        let unchanged = |base: &HashMap<String, Known>| base.get(org).is_some_and(|k| k.stamp == stamp);
        if !dirty && unchanged(&sharing.base.lock()) {
            return Ok(()); // Nothing to write, nothing new to read.
        }
        let failed = |path: PathBuf| move |source| DmStoreError::Io { path, source };
        let _lock = crate::org_files::lock(&self.dir, org).map_err(failed(self.dir.clone()))?;
        let stamp = stamp_of(&path);
        let mut base = sharing.base.lock();
        let known = base.get(org).cloned().unwrap_or_default();
        let file: Option<Value> = match (known.stamp == stamp, std::fs::read(&path)) {
            (true, _) => known.doc.clone(),
            (false, Ok(body)) => match serde_json::from_slice(&body) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!("{} is damaged ({e}): left as it is", path.display());
                    return Ok(());
                }
            },
            (false, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            (false, Err(e)) => return Err(failed(path)(e)),
        };
        match file == known.doc {
            true => self.write_ours(&mut base, org, file, all),
            false => self.take_theirs(sharing, &mut base, org, known.doc, file),
        }
    }

    /// Writes this node's change of `org` if it has one that is due; the file is as this
    /// node last saw it (`file`). Memory is unlocked while the file is written.
    fn write_ours(
        &self,
        base: &mut HashMap<String, Known>,
        org: &str,
        file: Option<Value>,
        all: bool,
    ) -> Result<(), DmStoreError> {
        let now = Instant::now();
        let (ours, body) = {
            let mut orgs = self.orgs.lock();
            let Some(o) = orgs.get_mut(org).filter(|o| o.dirty && (all || !early(o, now))) else {
                drop(orgs);
                remember(base, &self.dir, org, file);
                return Ok(());
            };
            let ours = crate::dm_store::encode_value(o);
            let body = ours.as_ref().map(|v| v.to_string().into_bytes());
            o.dirty = false;
            o.written = Some((now, body.as_ref().map_or(0, Vec::len)));
            (ours, body)
        };
        if let Err(e) = crate::dm_store::write_org(&self.dir, org, body.as_deref()) {
            if let Some(o) = self.orgs.lock().get_mut(org) {
                o.dirty = true;
            }
            return Err(e);
        }
        remember(base, &self.dir, org, ours);
        Ok(())
    }

    /// Takes another node's version of `org` (`file`, changed since this node's `known`),
    /// merged with this node's unwritten changes; the merge is written for the mirror.
    fn take_theirs(
        &self,
        sharing: &Sharing,
        base: &mut HashMap<String, Known>,
        org: &str,
        known: Option<Value>,
        file: Option<Value>,
    ) -> Result<(), DmStoreError> {
        let result = {
            let mut orgs = self.orgs.lock();
            let result = match orgs.get(org).filter(|o| o.dirty) {
                Some(o) => (sharing.merge)(known.as_ref(), crate::dm_store::encode_value(o).as_ref(), file.as_ref()),
                None => file.clone(),
            };
            match result.clone().map(crate::dm_store::decode_value).transpose() {
                Ok(state) => {
                    let written = orgs.get(org).and_then(|o| o.written);
                    let state = state.unwrap_or_default();
                    orgs.insert(org.to_string(), OrgDm { written, ..state });
                }
                Err(e) => {
                    drop(orgs);
                    tracing::warn!("device management of {org} from another node not taken: {e}");
                    remember(base, &self.dir, org, file);
                    return Ok(());
                }
            }
            result
        };
        if result != file {
            let body = result.as_ref().map(|v| v.to_string().into_bytes());
            if let Err(e) = crate::dm_store::write_org(&self.dir, org, body.as_deref()) {
                // The merge stays in memory, written as this node's change next time.
                if let Some(o) = self.orgs.lock().get_mut(org) {
                    o.dirty = true;
                }
                remember(base, &self.dir, org, file);
                return Err(e);
            }
            tracing::info!("device management of {org} changed here and on another node: merged");
        }
        remember(base, &self.dir, org, result);
        Ok(())
    }
}

/// Notes `doc` as `org`'s file as this node last saw it, with the file's stamp now.
fn remember(base: &mut HashMap<String, Known>, dir: &std::path::Path, org: &str, doc: Option<Value>) {
    let stamp = stamp_of(&dir.join(format!("{org}.json")));
    base.insert(org.to_string(), Known { doc, stamp });
}
