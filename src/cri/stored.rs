//! CRI messages inside store records: prost types have no serde, so a record keeps the
//! message as base64 of its protobuf encoding — lossless, and as stable as the wire itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored<T>(pub T);

impl<T: prost::Message> Serialize for Stored<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(self.0.encode_to_vec()))
    }
}

impl<'de, T: prost::Message + Default> Deserialize<'de> for Stored<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = BASE64.decode(text).map_err(serde::de::Error::custom)?;
        T::decode(bytes.as_slice())
            .map(Stored)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1::{PodSandboxConfig, PodSandboxMetadata};

    #[test]
    fn round_trip() {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            hostname: "web-0".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&Stored(config.clone())).unwrap();
        let back: Stored<PodSandboxConfig> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, config);
        assert!(serde_json::from_str::<Stored<PodSandboxConfig>>("\"!!\"").is_err());
    }
}
