//! The MQTT topics of the device protocol (docs/device-protocol.md), the same on any
//! broker or bus that carries them.

use crate::ids::DeviceId;

/// Topic a device publishes its messages to.
pub fn readings_topic(device_id: &DeviceId) -> String {
    format!("wardline/v1/devices/{device_id}/readings")
}

/// Topic a device may subscribe to for refusals.
pub fn errors_topic(device_id: &DeviceId) -> String {
    format!("wardline/v1/devices/{device_id}/errors")
}
