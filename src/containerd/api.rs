//! The few containerd API messages kiln speaks, declared by hand from containerd's `.proto` files
//! (`api/services/{content,images,leases,version}/v1`, `api/types/descriptor.proto`) so that
//! building kiln needs no `protoc`. Field numbers must match those files; unused fields are left
//! out (protobuf skips unknown fields on decode).
//!
//! The content service's messages serve both sides: kiln's containerd client writes blobs with
//! them, and the build session's content store ([`crate::buildkit::session`]) answers BuildKit
//! with them.

use std::collections::HashMap;

/// `containerd.types.Descriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Descriptor {
    #[prost(string, tag = "1")]
    pub media_type: String,
    #[prost(string, tag = "2")]
    pub digest: String,
    #[prost(int64, tag = "3")]
    pub size: i64,
    #[prost(map = "string, string", tag = "5")]
    pub annotations: HashMap<String, String>,
}

/// `containerd.services.version.v1.VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub revision: String,
}

/// `containerd.services.leases.v1.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, string", tag = "3")]
    pub labels: HashMap<String, String>,
}

/// `containerd.services.leases.v1.CreateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateLeaseRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, string", tag = "3")]
    pub labels: HashMap<String, String>,
}

/// `containerd.services.leases.v1.CreateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateLeaseResponse {
    #[prost(message, optional, tag = "1")]
    pub lease: Option<Lease>,
}

/// `containerd.services.leases.v1.DeleteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteLeaseRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub sync: bool,
}

/// `containerd.services.leases.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseResource {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
}

/// `containerd.services.leases.v1.AddResourceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddResourceRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<LeaseResource>,
}

/// `containerd.services.content.v1.Info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContentInfo {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub size: i64,
    #[prost(message, optional, tag = "3")]
    pub created_at: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "4")]
    pub updated_at: Option<prost_types::Timestamp>,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
}

/// `containerd.services.content.v1.InfoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
}

/// `containerd.services.content.v1.InfoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ContentInfo>,
}

/// `containerd.services.content.v1.UpdateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateContentRequest {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ContentInfo>,
    #[prost(message, optional, tag = "2")]
    pub update_mask: Option<prost_types::FieldMask>,
}

/// `containerd.services.content.v1.UpdateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateContentResponse {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ContentInfo>,
}

/// `containerd.services.content.v1.ReadContentRequest`: `size` 0 (or past the end) reads to
/// the end of the blob.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadContentRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub offset: i64,
    #[prost(int64, tag = "3")]
    pub size: i64,
}

/// `containerd.services.content.v1.ReadContentResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadContentResponse {
    #[prost(int64, tag = "1")]
    pub offset: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// `containerd.services.content.v1.WriteAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum WriteAction {
    Stat = 0,
    Write = 1,
    Commit = 2,
}

/// `containerd.services.content.v1.WriteContentRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteContentRequest {
    #[prost(enumeration = "WriteAction", tag = "1")]
    pub action: i32,
    #[prost(string, tag = "2")]
    pub r#ref: String,
    #[prost(int64, tag = "3")]
    pub total: i64,
    #[prost(string, tag = "4")]
    pub expected: String,
    #[prost(int64, tag = "5")]
    pub offset: i64,
    #[prost(bytes = "bytes", tag = "6")]
    pub data: bytes::Bytes,
    #[prost(map = "string, string", tag = "7")]
    pub labels: HashMap<String, String>,
}

/// `containerd.services.content.v1.WriteContentResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteContentResponse {
    #[prost(enumeration = "WriteAction", tag = "1")]
    pub action: i32,
    #[prost(message, optional, tag = "2")]
    pub started_at: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub updated_at: Option<prost_types::Timestamp>,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub total: i64,
    #[prost(string, tag = "6")]
    pub digest: String,
}

/// `containerd.services.images.v1.Image`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(map = "string, string", tag = "2")]
    pub labels: HashMap<String, String>,
    #[prost(message, optional, tag = "3")]
    pub target: Option<Descriptor>,
}

/// `CreateImageResponse` and `UpdateImageResponse` share this shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageResponse {
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
}

/// `containerd.services.images.v1.CreateImageRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateImageRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
}

/// `containerd.services.images.v1.UpdateImageRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateImageRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
    #[prost(message, optional, tag = "2")]
    pub update_mask: Option<prost_types::FieldMask>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn write_request_uses_containerds_field_numbers() {
        let req = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: "r".into(),
            total: 3,
            ..Default::default()
        };
        // action=2 (field 1 varint), ref "r" (field 2), total=3 (field 3 varint).
        assert_eq!(req.encode_to_vec(), vec![0x08, 2, 0x12, 1, b'r', 0x18, 3]);
    }

    #[test]
    fn messages_use_containerds_field_numbers() {
        // ReadContentRequest{digest: "d", offset: 1, size: 2} as containerd's Go code encodes it.
        let req = ReadContentRequest {
            digest: "d".into(),
            offset: 1,
            size: 2,
        };
        assert_eq!(
            req.encode_to_vec(),
            vec![0x0a, 0x01, b'd', 0x10, 0x01, 0x18, 0x02]
        );
        let resp = ReadContentResponse {
            offset: 3,
            data: b"xy".to_vec(),
        };
        assert_eq!(
            resp.encode_to_vec(),
            vec![0x08, 0x03, 0x12, 0x02, b'x', b'y']
        );
    }
}
