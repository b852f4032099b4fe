//! Request bodies on disk: a body that must be sent to several sites, or
//! again after a failure, is written once to `<data_dir>/spool/` as it
//! arrives (chunk by chunk: memory stays at one chunk whatever the size),
//! fsynced, renamed into place and its directory fsynced, before the
//! operation that refers to it is committed. Each delivery then streams it
//! from the file. A file is removed once its operation is finished on every
//! site; at start-up, files no open operation refers to (a crash between
//! spooling and committing) are removed.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

/// Suffix of finished spool files.
const SUFFIX: &str = ".body";
/// Suffix while being written.
const PART: &str = ".part";

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

/// A spooled body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// File name in the spool directory.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
}

/// Why a body could not be spooled.
#[derive(Debug)]
pub enum SpoolError {
    /// Longer than `max_bytes` (the partial file is removed).
    TooLarge { limit: u64 },
    /// The client's stream failed.
    Body(String),
    /// Disk error.
    Io(std::io::Error),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::TooLarge { limit } => write!(f, "request body larger than {limit} bytes"),
            SpoolError::Body(e) => write!(f, "reading the request body: {e}"),
            SpoolError::Io(e) => write!(f, "spooling the request body: {e}"),
        }
    }
}

impl std::error::Error for SpoolError {}

impl From<std::io::Error> for SpoolError {
    fn from(e: std::io::Error) -> Self {
        SpoolError::Io(e)
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // The name only has to be unique in this directory: fall back on time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{t:x}{:x}", std::process::id());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Spool {
    /// Opens (creating) the directory; bodies over `max_bytes` are refused.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest body accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The path of a spooled file (names come from [`Spool::write`] only).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a body stream to a new file, durably.
    pub async fn write<S, E>(&self, stream: S) -> Result<Spooled, SpoolError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: fmt::Display,
    {
        let stem = random_hex(12);
        let part = self.dir.join(format!("{stem}{PART}"));
        let name = format!("{stem}{SUFFIX}");
        let result = self.write_part(&part, stream).await;
        match result {
            Ok(len) => {
                tokio::fs::rename(&part, self.dir.join(&name)).await?;
                sync_dir(&self.dir).await?;
                Ok(Spooled { name, len })
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn write_part<S, E>(&self, part: &Path, stream: S) -> Result<u64, SpoolError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: fmt::Display,
    {
        let mut file = tokio::fs::File::create(part).await?;
        let mut len: u64 = 0;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SpoolError::Body(e.to_string()))?;
            len = len.saturating_add(chunk.len() as u64);
            if len > self.max_bytes {
                return Err(SpoolError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(len)
    }

    /// Writes bytes already in memory.
    pub async fn write_bytes(&self, b: Bytes) -> Result<Spooled, SpoolError> {
        self.write(futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(b)
        }))
        .await
    }

    /// Removes a spooled file (missing is fine).
    pub async fn remove(&self, name: &str) {
        if is_spool_name(name) {
            if let Err(e) = tokio::fs::remove_file(self.dir.join(name)).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = name, error = %e, "cannot remove a spooled body");
                }
            }
        }
    }

    /// Removes every file not in `keep` (start-up only: a body being
    /// spooled by a request is not in `keep` yet). Returns how many.
    pub fn gc(&self, keep: &HashSet<String>) -> std::io::Result<usize> {
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.ends_with(SUFFIX) || name.ends_with(PART)) && !keep.contains(&name) {
                std::fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// A streaming request body reading the file (64 KiB chunks).
    pub async fn body(&self, name: &str) -> std::io::Result<(reqwest::Body, u64)> {
        file_body(&self.dir.join(name)).await
    }
}

/// A streaming request body reading a file (64 KiB chunks), and its length.
pub async fn file_body(path: &Path) -> std::io::Result<(reqwest::Body, u64)> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    Ok((reqwest::Body::wrap_stream(stream), len))
}

fn is_spool_name(name: &str) -> bool {
    !name.contains('/') && !name.contains("..") && (name.ends_with(SUFFIX) || name.ends_with(PART))
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spools_a_large_stream_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 64 << 20).unwrap();
        // 40 MiB in 1 MiB chunks, produced lazily: never in memory at once.
        let chunks = futures_util::stream::iter(0..40u8)
            .map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![i; 1 << 20])));
        let s = spool.write(chunks).await.unwrap();
        assert_eq!(s.len, 40 << 20);
        let meta = std::fs::metadata(spool.path(&s.name)).unwrap();
        assert_eq!(meta.len(), 40 << 20);
        let (_, len) = spool.body(&s.name).await.unwrap();
        assert_eq!(len, 40 << 20);
        let mut keep = HashSet::new();
        keep.insert(s.name.clone());
        let other = spool.write_bytes(Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(spool.gc(&keep).unwrap(), 1);
        assert!(!spool.path(&other.name).exists());
        assert!(spool.path(&s.name).exists());
        spool.remove(&s.name).await;
        assert!(!spool.path(&s.name).exists());
        spool.remove("../etc/passwd").await;
    }

    #[tokio::test]
    async fn too_large_and_failing_bodies_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 10).unwrap();
        let e = spool
            .write_bytes(Bytes::from_static(b"0123456789A"))
            .await
            .unwrap_err();
        assert!(matches!(e, SpoolError::TooLarge { limit: 10 }), "{e}");
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err("client went away"),
        ]);
        let e = spool.write(failing).await.unwrap_err();
        assert!(e.to_string().contains("client went away"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
