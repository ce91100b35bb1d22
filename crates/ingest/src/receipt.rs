//! Delivery receipts: for every run, a statement of what was delivered, signed with the
//! platform's Ed25519 key, that the delivering unit can keep and anyone can check.
//!
//! A receipt names the source, the table and run, the row account (read = loaded +
//! quarantined, and deleted), the table versions the run committed, every data file those
//! commits added with its size and SHA-256, a checksum over that list (`data_sha256`), a hash of
//! the table's schema, and the time. The signature covers the receipt's canonical JSON (its
//! fields in their fixed order, without `signature`). [`verify`] checks the signature against a
//! trusted public key; [`check_against_lake`] also re-hashes the files in the lake, so that a
//! data file changed after delivery is found.

use std::path::Path;

use arrow::datatypes::Schema;
use reservoir_catalog::RunCounts;
use reservoir_lake::{Lake, TableRef};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Receipt format version.
pub const RECEIPT_VERSION: u32 = 1;

/// The platform's signing key (Ed25519, PKCS#8 in a file readable only by its owner).
pub struct PlatformKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformKey")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl PlatformKey {
    /// Loads the key at `path`, creating it (mode 0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| Error::Invalid("the system random generator failed".into()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            write_private(path, pkcs8.as_ref()).map_err(io)?;
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| {
            Error::Invalid(format!(
                "{} is not an Ed25519 PKCS#8 key ({e})",
                path.display()
            ))
        })?;
        Ok(Self { pair })
    }

    /// The public key, hex: what units and auditors use to check receipts.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    fn sign(&self, bytes: &[u8]) -> String {
        hex::encode(self.pair.sign(bytes).as_ref())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// A data file a run committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFile {
    pub version: i64,
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

/// The row account of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRows {
    pub read: i64,
    pub loaded: i64,
    pub quarantined: i64,
    pub deleted: i64,
}

/// What a receipt states. Field order is the canonical order the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    pub receipt: u32,
    pub table: String,
    pub run_id: i64,
    pub batch_id: String,
    pub source: String,
    pub mode: String,
    pub rows: ReceiptRows,
    pub table_versions: Vec<i64>,
    pub files: Vec<ReceiptFile>,
    /// SHA-256 over the lines `version path size sha256` of `files`, in order.
    pub data_sha256: String,
    /// SHA-256 over the lines `name type nullable` of the table's columns.
    pub schema_sha256: String,
    pub issued_at: String,
    /// The signer's public key (hex); verify against a key you trust, not this one.
    pub public_key: String,
}

/// A signed receipt, as stored and handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(flatten)]
    pub body: ReceiptBody,
    /// Ed25519 signature (hex) of the body's canonical JSON.
    pub signature: String,
}

fn canonical(body: &ReceiptBody) -> Vec<u8> {
    // A struct serializes its fields in declaration order: the encoding is canonical.
    serde_json::to_vec(body).unwrap_or_default()
}

/// The checksum of a list of files.
pub fn data_sha256(files: &[ReceiptFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(format!(
            "{} {} {} {}\n",
            f.version, f.path, f.size, f.sha256
        ));
    }
    hex::encode(h.finalize())
}

/// The hash of a schema's columns.
pub fn schema_sha256(schema: &Schema) -> String {
    let mut h = Sha256::new();
    for f in schema.fields() {
        h.update(format!(
            "{} {} {}\n",
            f.name(),
            f.data_type(),
            f.is_nullable()
        ));
    }
    hex::encode(h.finalize())
}

/// What a run delivered, for [`issue`].
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub table: &'a TableRef,
    pub run_id: i64,
    pub batch_id: &'a str,
    pub source: &'a str,
    pub mode: &'a str,
    pub counts: RunCounts,
    /// Every table version the run committed.
    pub versions: &'a [i64],
}

/// Builds and signs the receipt of a delivery, hashing the files it committed.
pub async fn issue(lake: &Lake, key: &PlatformKey, d: Delivery<'_>) -> Result<Receipt> {
    let mut files = Vec::new();
    for &version in d.versions {
        for f in lake.commit_files(d.table, version).await? {
            let sha256 = lake.file_sha256(d.table, &f.path).await?;
            files.push(ReceiptFile {
                version,
                path: f.path,
                size: f.size,
                sha256,
            });
        }
    }
    let schema = lake
        .arrow_schema(d.table)
        .await?
        .map(|s| schema_sha256(&s))
        .unwrap_or_default();
    let body = ReceiptBody {
        receipt: RECEIPT_VERSION,
        table: d.table.to_string(),
        run_id: d.run_id,
        batch_id: d.batch_id.to_string(),
        source: d.source.to_string(),
        mode: d.mode.to_string(),
        rows: ReceiptRows {
            read: d.counts.rows_read,
            loaded: d.counts.rows_loaded,
            quarantined: d.counts.rows_quarantined,
            deleted: d.counts.rows_deleted,
        },
        table_versions: d.versions.to_vec(),
        data_sha256: data_sha256(&files),
        files,
        schema_sha256: schema,
        issued_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        public_key: key.public_key_hex(),
    };
    let signature = key.sign(&canonical(&body));
    Ok(Receipt { body, signature })
}

/// Why a receipt does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the receipt was signed by key {signer}, not the trusted key {trusted}")]
    OtherKey { signer: String, trusted: String },
    #[error("the signature does not match the receipt: it was altered after signing")]
    BadSignature,
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
}

/// Checks a receipt's signature against the trusted public key (hex).
pub fn verify(receipt: &Receipt, trusted_public_key: &str) -> std::result::Result<(), VerifyError> {
    if !receipt
        .body
        .public_key
        .eq_ignore_ascii_case(trusted_public_key)
    {
        return Err(VerifyError::OtherKey {
            signer: receipt.body.public_key.clone(),
            trusted: trusted_public_key.to_string(),
        });
    }
    let key = hex::decode(trusted_public_key)
        .map_err(|e| VerifyError::Malformed(format!("public key: {e}")))?;
    let signature = hex::decode(&receipt.signature)
        .map_err(|e| VerifyError::Malformed(format!("signature: {e}")))?;
    if data_sha256(&receipt.body.files) != receipt.body.data_sha256 {
        return Err(VerifyError::BadSignature);
    }
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&canonical(&receipt.body), &signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// Re-hashes the receipt's files in the lake; returns what no longer matches (empty when the
/// lake still holds exactly what was delivered).
pub async fn check_against_lake(lake: &Lake, receipt: &Receipt) -> Result<Vec<String>> {
    let parts: Vec<&str> = receipt.body.table.splitn(3, '.').collect();
    let [layer, unit, name] = parts.as_slice() else {
        return Err(Error::Invalid(format!(
            "receipt table {:?} is not layer.unit.name",
            receipt.body.table
        )));
    };
    let table = TableRef::new(
        layer
            .parse()
            .map_err(|e: reservoir_lake::Error| Error::Invalid(e.to_string()))?,
        *unit,
        *name,
    );
    let mut problems = Vec::new();
    for f in &receipt.body.files {
        match lake.file_sha256(&table, &f.path).await {
            Ok(sha) if sha == f.sha256 => {}
            Ok(sha) => problems.push(format!(
                "{} (version {}): content changed: sha256 {sha}, receipt says {}",
                f.path, f.version, f.sha256
            )),
            Err(e) => problems.push(format!("{} (version {}): {e}", f.path, f.version)),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(public_key: String) -> ReceiptBody {
        let files = vec![ReceiptFile {
            version: 1,
            path: "part-0.parquet".into(),
            size: 10,
            sha256: "ab".into(),
        }];
        ReceiptBody {
            receipt: RECEIPT_VERSION,
            table: "raw.u.d".into(),
            run_id: 7,
            batch_id: "b".into(),
            source: "人口.csv".into(),
            mode: "append".into(),
            rows: ReceiptRows {
                read: 3,
                loaded: 2,
                quarantined: 1,
                deleted: 0,
            },
            table_versions: vec![1],
            data_sha256: data_sha256(&files),
            files,
            schema_sha256: String::new(),
            issued_at: "2026-12-04T00:00:00.000Z".into(),
            public_key,
        }
    }

    #[test]
    fn signatures_hold_and_tampering_shows() {
        let dir = tempfile::tempdir().unwrap();
        let key = PlatformKey::load_or_create(&dir.path().join("keys/platform.key")).unwrap();
        // Loading again gives the same key.
        let again = PlatformKey::load_or_create(&dir.path().join("keys/platform.key")).unwrap();
        assert_eq!(key.public_key_hex(), again.public_key_hex());
        let pk = key.public_key_hex();
        let b = body(pk.clone());
        let receipt = Receipt {
            signature: key.sign(&canonical(&b)),
            body: b,
        };
        verify(&receipt, &pk).unwrap();
        // Through JSON and back, as a unit would keep it.
        let text = serde_json::to_string_pretty(&receipt).unwrap();
        let parsed: Receipt = serde_json::from_str(&text).unwrap();
        verify(&parsed, &pk).unwrap();

        let mut forged = receipt.clone();
        forged.body.rows.loaded = 3;
        assert_eq!(verify(&forged, &pk), Err(VerifyError::BadSignature));
        let mut forged = receipt.clone();
        forged.body.files[0].sha256 = "cd".into();
        assert_eq!(verify(&forged, &pk), Err(VerifyError::BadSignature));

        let other = PlatformKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(matches!(
            verify(&receipt, &other.public_key_hex()),
            Err(VerifyError::OtherKey { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys/platform.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
