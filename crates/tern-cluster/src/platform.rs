//! The IoT platform's registry cluster-wide: each organization's registry file
//! (`<data dir>/platform/orgs/<org>.json`, written by the REST API, the admin API or
//! `tern iot` against the node's data directory) is mirrored in the key-value bucket
//! `PLATFORM_REGISTRY` under the organization's id, and every node writes the bucket's
//! version back into its own data directory, where its registry reloads it in place (it
//! polls its files' stamps).
//!
//! One task per node, on its own NATS connection. It reads the bucket's contents at start
//! (the bucket wins over a differing local file, and its deletion of an organization over
//! a local file of it; a local organization the bucket never had is added to it), then watches the bucket and looks at the local files every
//! [`SCAN_INTERVAL`]. A local file that changed since the version this node last wrote or
//! applied is written to the bucket with a compare-and-set on that version's revision; if
//! another node wrote the organization in between, the set fails, the other node's version
//! comes through the watch and is merged with the local change ([`merge`]: both sides'
//! changes to different records are kept; a record changed on both takes the other
//! node's), and the merged file is written with the next scan. A merge that the registry
//! could not load takes the other node's version (logged: the local change is lost). A
//! removed file deletes the key the same way. A version from the
//! bucket is written as the registry's writers write (under the organization's lock, to a
//! temporary file renamed over the old one), so the registry never reads half a file.
//!
//! The last event cache is each node's own, fed with every node's device events: while
//! [`EventCache::wanted`] (some organization has its cache enabled), the task subscribes in
//! NATS to the subjects of all organizations' device events
//! (`$iot/+/iot-2/type/+/id/+/evt/+/fmt/+`) and hands the other nodes' events to
//! [`EventCache::take`], so a cache read on any node answers with an event sent on another.
//!
//! Device management's files (`<data dir>/platform/dm/<org>.json`: the devices'
//! management state, requests and custom action bundles) are mirrored the same way, in the
//! bucket `PLATFORM_DM`, by a second loop on the same connection (started once the
//! registry's bucket is there); the node's device
//! management merges a version written here with its own state in memory (with [`merge`],
//! see `tern_platform::dm_share`).

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::stream::SelectAll;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The key-value bucket of the organizations' registry files.
pub const PLATFORM_BUCKET: &str = "PLATFORM_REGISTRY";
/// The key-value bucket of the organizations' device management files.
pub const DM_BUCKET: &str = "PLATFORM_DM";
/// How often the local registry files are looked at.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(300);
/// The largest registry file carried (NATS's default largest message is 1 MiB).
const MAX_FILE: usize = 1000 * 1024;

/// What this node last wrote to or applied from the bucket, per organization.
#[derive(Debug, Clone)]
struct Known {
    revision: u64,
    /// The file's content, `None` once deleted.
    content: Option<Bytes>,
}

/// The filter of every organization's device events (the platform's internal topics).
const EVENTS_FILTER: &str = "$iot/+/iot-2/type/+/id/+/evt/+/fmt/+";

/// The node's last event cache, as the platform wires it in.
pub trait EventCache: Send + Sync + 'static {
    /// Whether some organization has its cache enabled (asked every second).
    fn wanted(&self) -> bool;
    /// Takes an event another node accepted (internal topic and payload).
    fn take(&self, topic: &str, payload: Bytes);
}

/// Checks that a registry file (organization id, content) can be loaded; the error says
/// what is wrong.
pub type CheckFile = Arc<dyn Fn(&str, &[u8]) -> Result<(), String> + Send + Sync>;

/// One kind of per-organization file mirrored with a bucket.
struct Kind {
    bucket: &'static str,
    /// Its folder inside the data directory's `platform`.
    folder: &'static str,
    /// What its logs call an organization's file ("organization", "device management of").
    what: &'static str,
    /// Checks a version from the bucket before it is written locally.
    check: CheckFile,
    /// Whether a local file is whole enough to be shared (not being written by hand).
    ready: fn(&[u8], &str) -> bool,
}

/// Mirrors the registry of `data_dir` with the bucket (each version written locally checked
/// with `check` first), and device management's files likewise (checked with `check_dm`),
/// and feeds `cache` the other nodes' device events, until the process ends.
pub async fn run(
    settings: crate::Settings,
    data_dir: PathBuf,
    check: CheckFile,
    check_dm: CheckFile,
    cache: Option<Arc<dyn EventCache>>,
) {
    let options = match crate::connect::options(&settings, "-platform") {
        Ok(options) => options,
        Err(e) => {
            tracing::error!("cluster: the platform's registry is not shared: {e}");
            return;
        }
    };
    let client = match options.connect(settings.urls.as_slice()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("cluster: the platform's registry is not shared: {e}");
            return;
        }
    };
    if let Some(cache) = cache {
        tokio::spawn(feed_cache(client.clone(), settings.node.clone(), cache));
    }
    let js = jetstream::new(client);
    let dm = Kind {
        bucket: DM_BUCKET,
        folder: "dm",
        what: "device management of",
        check: check_dm,
        ready: |text, _| text.first() == Some(&b'{') && text.trim_ascii_end().last() == Some(&b'}'),
    };
    let registry = Kind {
        bucket: PLATFORM_BUCKET,
        folder: "orgs",
        what: "organization",
        check,
        ready: holds_org,
    };
    let replicas = settings.replicas();
    // Device management once the registry's bucket is there: buckets being made at once
    // on a fresh cluster slow each other down.
    let (made, mut registry_made) = tokio::sync::watch::channel(false);
    let (dm_js, dm_dir) = (js.clone(), data_dir.clone());
    tokio::spawn(async move {
        if registry_made.wait_for(|made| *made).await.is_ok() {
            keep_mirroring(dm_js, replicas, dm_dir, dm, None).await;
        }
    });
    keep_mirroring(js, replicas, data_dir, registry, Some(made)).await;
}

/// Mirrors one kind of file, starting again after each failure, until the process ends;
/// `made` is told once its bucket is there.
async fn keep_mirroring(
    js: jetstream::Context,
    replicas: usize,
    data_dir: PathBuf,
    kind: Kind,
    made: Option<tokio::sync::watch::Sender<bool>>,
) {
    let dir = data_dir.join("platform").join(kind.folder);
    // Kept when the watch starts again (after an outage), so that a change made here
    // meanwhile is merged with the bucket's, not replaced by it.
    let mut known: HashMap<String, Known> = HashMap::new();
    loop {
        match mirror(&js, replicas, &dir, &kind, &mut known, made.as_ref()).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(
                "cluster: sharing {} (bucket {}): {e} (trying again)",
                kind.folder,
                kind.bucket
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Reads the bucket, then watches it and the files until the watch ends.
async fn mirror(
    js: &jetstream::Context,
    replicas: usize,
    dir: &Path,
    kind: &Kind,
    known: &mut HashMap<String, Known>,
    made: Option<&tokio::sync::watch::Sender<bool>>,
) -> Result<(), Failure> {
    let bucket = crate::health::bucket(js, kind.bucket, replicas, Duration::ZERO).await?;
    if let Some(made) = made {
        made.send_replace(true);
    }
    // The stream keeps each key's last write (a deletion too): read from its start, the
    // files are looked at only once the bucket's state at this moment has been applied.
    let last = bucket.status().await?.info.state.last_sequence;
    let mut caught_up = last == 0;
    let mut too_large = std::collections::HashSet::new();
    let mut watch = bucket.watch_all_from_revision(1).await?;
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    loop {
        tokio::select! {
            entry = watch.next() => match entry {
                Some(Ok(entry)) => {
                    apply(dir, &entry, known, kind);
                    caught_up |= entry.revision >= last;
                }
                Some(Err(e)) => {
                    tracing::debug!("cluster: watching the platform's registry: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => return Ok(()),
            },
            _ = tick.tick(), if caught_up => publish_changes(&bucket, dir, known, kind, &mut too_large).await,
        }
    }
}

/// Whether `org` is an organization id (1 to 36 of a-z and 0-9), so a safe file name.
fn org_id(org: &str) -> bool {
    (1..=36).contains(&org.len()) && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Applies one version from the bucket to the local file (unless it is this node's own).
/// A local change not yet in the bucket is merged with it ([`merge`]); the merged file goes
/// to the bucket with the next scan.
fn apply(dir: &Path, entry: &kv::Entry, known: &mut HashMap<String, Known>, kind: &Kind) {
    let (org, what) = (entry.key.as_str(), kind.what);
    if !org_id(org) {
        tracing::warn!("cluster: {} key {org:?} ignored: not an organization id", kind.bucket);
        return;
    }
    if known.get(org).is_some_and(|k| k.revision >= entry.revision) {
        return;
    }
    let theirs = match entry.operation {
        kv::Operation::Put => {
            if let Err(e) = (kind.check)(org, &entry.value) {
                tracing::warn!("cluster: {} version of {org} ignored: {e}", kind.bucket);
                return;
            }
            Some(entry.value.clone())
        }
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    // Under the organization's lock: a change this node's registry writes meanwhile is
    // either in `local` or made after this version is written.
    let _lock = match std::fs::create_dir_all(dir).and_then(|()| lock(dir, org)) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::error!("cluster: cannot apply {what} {org} from the cluster: {e}");
            return;
        }
    };
    let local = std::fs::read(dir.join(format!("{org}.json"))).ok();
    let mut content = theirs.clone();
    // A change made here since the last version this node wrote or applied: merged with
    // the other node's (never at start: the bucket then wins).
    if let Some(base) = known.get(org).filter(|k| k.content.as_deref() != local.as_deref()) {
        if local.as_deref() != theirs.as_deref() {
            content = merged(org, base.content.as_deref(), local.as_deref(), theirs.as_deref(), kind);
        }
    }
    if local.as_deref() != content.as_deref() {
        if let Err(e) = write_local(dir, org, content.as_deref()) {
            tracing::error!("cluster: cannot apply {what} {org} from the cluster: {e}");
            return;
        }
        tracing::info!(
            "cluster: {what} {org} {} from the cluster",
            if content.is_some() { "updated" } else { "removed" }
        );
    }
    known.insert(
        org.to_string(),
        Known {
            revision: entry.revision,
            content: theirs,
        },
    );
}

/// This node's version of `org` merged with another node's, both changed from `base`; the
/// other node's version if they cannot be merged into a loadable file (logged: this node's
/// change is lost).
fn merged(org: &str, base: Option<&[u8]>, ours: Option<&[u8]>, theirs: Option<&[u8]>, kind: &Kind) -> Option<Bytes> {
    let what = kind.what;
    let parse = |t: Option<&[u8]>| t.and_then(|t| serde_json::from_slice::<serde_json::Value>(t).ok());
    let result = merge(parse(base).as_ref(), parse(ours).as_ref(), parse(theirs).as_ref());
    let text = result.and_then(|v| serde_json::to_vec_pretty(&v).ok()).map(|mut t| {
        t.push(b'\n');
        Bytes::from(t)
    });
    match &text {
        Some(t) if (kind.check)(org, t).is_ok() => {
            tracing::info!("cluster: {what} {org} changed here and on another node: merged");
            text
        }
        None if theirs.is_none() => None,
        _ => {
            tracing::warn!(
                "cluster: {what} {org} changed here and on another node at once: the other \
                 node's version replaces this node's change"
            );
            theirs.map(Bytes::copy_from_slice)
        }
    }
}

/// A three-way merge of JSON documents: a side that did not change from `base` takes the
/// other's; objects changed on both sides are merged member by member; any other change
/// on both sides takes `theirs`. `None` is a deleted document.
pub fn merge(
    base: Option<&serde_json::Value>,
    ours: Option<&serde_json::Value>,
    theirs: Option<&serde_json::Value>,
) -> Option<serde_json::Value> {
    use serde_json::Value;
    if ours == base || ours == theirs {
        return theirs.cloned();
    }
    if theirs == base {
        return ours.cloned();
    }
    match (base, ours, theirs) {
        (None | Some(Value::Object(_)), Some(Value::Object(o)), Some(Value::Object(t))) => {
            let empty = serde_json::Map::new();
            let b = match base {
                Some(Value::Object(b)) => b,
                _ => &empty,
            };
            let mut out = serde_json::Map::new();
            for key in o.keys().chain(t.keys()) {
                if out.contains_key(key) {
                    continue;
                }
                if let Some(v) = merge(b.get(key), o.get(key), t.get(key)) {
                    out.insert(key.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        _ => theirs.cloned(),
    }
}

/// Whether `text` is a JSON object whose `org.id` is `org` (the registry checks the rest
/// when it loads the file, and keeps its previous version of a damaged one).
fn holds_org(text: &[u8], org: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .is_some_and(|v| v.get("org").and_then(|o| o.get("id")).and_then(|i| i.as_str()) == Some(org))
}

/// Writes the bucket's changes of this node's files: each local file that differs from
/// what this node last wrote or applied, and each file removed since.
async fn publish_changes(
    bucket: &kv::Store,
    dir: &Path,
    known: &mut HashMap<String, Known>,
    kind: &Kind,
    too_large: &mut std::collections::HashSet<String>,
) {
    let what = kind.what;
    let mut local = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(org) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if org_id(org) {
                if let Ok(text) = std::fs::read(entry.path()) {
                    local.insert(org.to_string(), Bytes::from(text));
                }
            }
        }
    }
    for (org, text) in &local {
        let previous = known.get(org);
        if previous.and_then(|k| k.content.as_ref()) == Some(text) {
            continue;
        }
        if text.len() > MAX_FILE {
            if too_large.insert(org.clone()) {
                tracing::warn!(
                    "cluster: {what} {org} is not shared with the other nodes: its file is larger \
                     than {MAX_FILE} bytes"
                );
            }
            continue;
        }
        too_large.remove(org);
        if !(kind.ready)(text, org) {
            continue; // Being written by hand: not carried.
        }
        let written = match previous {
            Some(k) => bucket
                .update(org, text.clone(), k.revision)
                .await
                .map_err(|e| e.to_string()),
            None => bucket.create(org, text.clone()).await.map_err(|e| e.to_string()),
        };
        match written {
            Ok(revision) => {
                let content = Some(text.clone());
                known.insert(org.clone(), Known { revision, content });
            }
            Err(e) => tracing::warn!(
                "cluster: {what} {org} changed here was not shared ({e}); if another node \
                 changed it at the same time, its version replaces this one"
            ),
        }
    }
    let removed: Vec<(String, u64)> = known
        .iter()
        .filter(|(org, k)| k.content.is_some() && !local.contains_key(*org))
        .map(|(org, k)| (org.clone(), k.revision))
        .collect();
    for (org, revision) in removed {
        match bucket.delete_expect_revision(&org, Some(revision)).await {
            // The delete's own revision comes through the watch; until then it is gone.
            Ok(()) => {
                if let Some(k) = known.get_mut(&org) {
                    k.content = None;
                }
            }
            Err(e) => tracing::warn!("cluster: {what} {org} removed here was not removed elsewhere: {e}"),
        }
    }
}

/// Replaces (or removes) `org`'s file as the registry's writers do (the caller holds its
/// lock): a temporary file flushed and renamed over the old one, the directory flushed.
fn write_local(dir: &Path, org: &str, content: Option<&[u8]>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("{org}.json"));
    match content {
        Some(text) => {
            let temporary = dir.join(format!(".{org}.json.{}.tmp", std::process::id()));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(text)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temporary, &path)?;
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    std::fs::File::open(dir)?.sync_all()
}

/// The registry writers' exclusive lock on `org` (`.<org>.lock`, flock), released when
/// the file is dropped.
fn lock(dir: &Path, org: &str) -> std::io::Result<std::fs::File> {
    tern_broker::file_lock::exclusive(&dir.join(format!(".{org}.lock")))
}

/// Subscribes to every organization's device events while `cache` wants them, and hands
/// it those other nodes accepted (this node's own reach it through the broker).
async fn feed_cache(client: async_nats::Client, node: String, cache: Arc<dyn EventCache>) {
    // Events at QoS 0 and at QoS 1/2 come on subjects of their own.
    let Some(subjects) = crate::subject::live_filter_subjects(EVENTS_FILTER) else {
        return;
    };
    let own = format!("{node}:");
    // Dropping the subscribers unsubscribes them in NATS.
    let mut subscription: Option<SelectAll<async_nats::Subscriber>> = None;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let Some(subscribers) = subscription.as_mut() else {
            check.tick().await;
            if cache.wanted() {
                let mut subscribers = SelectAll::new();
                for subject in &subjects {
                    match client.subscribe(subject.clone()).await {
                        Ok(s) => subscribers.push(s),
                        Err(e) => tracing::warn!("cluster: cannot follow the other nodes' device events: {e}"),
                    }
                }
                subscription = (subscribers.len() == subjects.len()).then_some(subscribers);
            }
            continue;
        };
        tokio::select! {
            message = subscribers.next() => {
                let Some(message) = message else {
                    subscription = None;
                    continue;
                };
                match crate::wire::decode(&message.payload) {
                    Ok(record) if !record.origin.starts_with(&own) => {
                        cache.take(&record.publish.topic, record.publish.payload);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("cluster: a device event dropped: {e}"),
                }
            }
            _ = check.tick() => {
                if !cache.wanted() {
                    subscription = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge;
    use serde_json::json;

    #[test]
    fn changes_to_different_records_are_both_kept_and_a_conflict_takes_theirs() {
        let base = json!({"org": {"id": "o"}, "devices": {"t": {"d1": {"n": 1}}}});
        let ours = json!({"org": {"id": "o"}, "devices": {"t": {"d1": {"n": 2}, "d2": {}}}});
        let theirs = json!({"org": {"id": "o"}, "devices": {"t": {"d1": {"n": 3}, "d3": {}}}});
        let merged = merge(Some(&base), Some(&ours), Some(&theirs));
        let expected = json!({"org": {"id": "o"}, "devices": {"t": {"d1": {"n": 3}, "d2": {}, "d3": {}}}});
        assert_eq!(merged, Some(expected));
        // A record removed on one side and unchanged on the other stays removed.
        let removed = json!({"org": {"id": "o"}, "devices": {"t": {}}});
        let added = json!({"org": {"id": "o"}, "devices": {"t": {"d1": {"n": 1}, "d3": {}}}});
        let merged = merge(Some(&base), Some(&removed), Some(&added));
        assert_eq!(merged, Some(json!({"org": {"id": "o"}, "devices": {"t": {"d3": {}}}})));
        // Removed on one side, changed on the other: the other node's.
        let merged = merge(Some(&base), Some(&removed), Some(&theirs));
        assert_eq!(merged, Some(theirs.clone()));
        // The organization deleted on the other side: deleted.
        assert_eq!(merge(Some(&base), Some(&ours), None), None);
        // Unchanged here: theirs.
        assert_eq!(merge(Some(&base), Some(&base), Some(&theirs)), Some(theirs.clone()));
    }
}
