//! The devices the gateway takes readings from, and what it checks their secrets
//! against (`wardline_domain::local_device`): the list the server sends with every
//! answer to a forward, kept in a file beside the queue so that a gateway restarted
//! while the server is out of reach still knows its devices.
//!
//! A device sends its local credential for this gateway (never its secret). A device
//! the gateway has not heard of from the server (just assigned, while the gateway was
//! cut off) is refused until the gateway's next contact; it keeps its reading and
//! retries.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use wardline_domain::DeviceId;
use wardline_domain::local_device::{same, verifier};

use crate::GatewayError;

/// The file's format; a later version that changes it reads this one too.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    devices: Vec<StoredDevice>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredDevice {
    device_id: String,
    verifier: String,
}

#[derive(Debug)]
pub struct LocalDevices {
    path: PathBuf,
    known: RwLock<HashMap<DeviceId, [u8; 32]>>,
}

fn decode(device_id: &str, verifier: &str) -> Result<(DeviceId, [u8; 32]), GatewayError> {
    let device = DeviceId::parse(device_id)
        .map_err(|error| GatewayError::Config(format!("local device {device_id:?}: {error}")))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(verifier, &mut bytes).map_err(|error| {
        GatewayError::Config(format!("the verifier of local device {device_id}: {error}"))
    })?;
    Ok((device, bytes))
}

impl LocalDevices {
    /// The list kept at `path`; none yet (a new gateway) is an empty list.
    pub fn load(path: &Path) -> Result<Self, GatewayError> {
        let known = match std::fs::read(path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).map_err(|error| {
                    GatewayError::Config(format!("{}: {error}", path.display()))
                })?;
                if stored.version != FORMAT_VERSION {
                    return Err(GatewayError::Config(format!(
                        "{}: format version {} (this gateway reads {FORMAT_VERSION})",
                        path.display(),
                        stored.version
                    )));
                }
                stored
                    .devices
                    .iter()
                    .map(|device| decode(&device.device_id, &device.verifier))
                    .collect::<Result<HashMap<_, _>, _>>()?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => return Err(error.into()),
        };
        Ok(Self {
            path: path.to_owned(),
            known: RwLock::new(known),
        })
    }

    /// How many devices the gateway knows.
    pub fn len(&self) -> usize {
        self.known.read().map(|known| known.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `credential` is the local credential of `device`, a device this gateway
    /// may take readings from.
    pub fn admits(&self, device: &DeviceId, credential: &str) -> bool {
        let presented = verifier(credential);
        self.known
            .read()
            .ok()
            .and_then(|known| known.get(device).map(|held| same(held, &presented)))
            .unwrap_or(false)
    }

    /// Replaces the list with the server's (`(device id, hex verifier)`), writing it to
    /// its file first when it changed. A list that cannot be read is refused whole.
    pub fn replace(&self, devices: &[(String, String)]) -> Result<(), GatewayError> {
        let fresh = devices
            .iter()
            .map(|(device_id, verifier)| decode(device_id, verifier))
            .collect::<Result<HashMap<_, _>, _>>()?;
        if self.known.read().is_ok_and(|known| *known == fresh) {
            return Ok(());
        }
        let mut stored = Stored {
            version: FORMAT_VERSION,
            devices: devices
                .iter()
                .map(|(device_id, verifier)| StoredDevice {
                    device_id: device_id.clone(),
                    verifier: verifier.clone(),
                })
                .collect(),
        };
        stored.devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        let bytes =
            serde_json::to_vec(&stored).map_err(|error| GatewayError::Config(error.to_string()))?;
        let partial = self.path.with_extension("new");
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&partial)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&partial, &self.path)?;
        if let Ok(mut known) = self.known.write() {
            *known = fresh;
        }
        tracing::info!(
            devices = devices.len(),
            "the server's list of local devices changed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_domain::local_device::{local_credential, secret_hash, verifier_from_hash};

    #[test]
    fn a_device_is_admitted_with_its_local_credential_and_the_list_survives_a_restart() {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = folder.path().join("local-devices.json");
        let gateway = DeviceId::parse("gw-home").expect("id");
        let oximeter = DeviceId::parse("ox-1").expect("id");
        let credential = local_credential(&gateway, &secret_hash(b"wds_secret"));
        let guess = local_credential(&gateway, &secret_hash(b"wds_guess"));
        let list = LocalDevices::load(&path).expect("no file yet");
        assert!(list.is_empty());
        assert!(!list.admits(&oximeter, &credential));
        let held = hex::encode(verifier_from_hash(&gateway, &secret_hash(b"wds_secret")));
        list.replace(&[("ox-1".into(), held)]).expect("replace");
        assert!(list.admits(&oximeter, &credential));
        assert!(!list.admits(&oximeter, &guess));
        assert!(
            !list.admits(&oximeter, "wds_secret"),
            "the secret itself is refused"
        );
        assert!(!list.admits(&DeviceId::parse("ox-2").expect("id"), &credential));
        let reloaded = LocalDevices::load(&path).expect("reload");
        assert!(
            reloaded.admits(&oximeter, &credential),
            "kept across a restart"
        );
        // The server took the device away: it is refused from then on.
        reloaded.replace(&[]).expect("replace");
        assert!(!reloaded.admits(&oximeter, &credential));
        assert!(
            !LocalDevices::load(&path)
                .expect("reload")
                .admits(&oximeter, &credential)
        );
        assert!(list.replace(&[("ox-1".into(), "not hex".into())]).is_err());
    }
}
