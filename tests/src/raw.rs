//! A gRPC codec that sends and receives messages as the bytes they are: any
//! method, any body, including messages no generated client would build
//! (hostile-input tests).

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{DecodeBuf, EncodeBuf};

#[derive(Clone, Copy, Default)]
pub struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Bytes;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Opens a streaming call to `path` that sends `messages` as they are and
/// returns the answers' stream (or the call's refusal).
pub async fn call(
    channel: tonic::transport::Channel,
    path: &'static str,
    messages: Vec<Bytes>,
    max_message: usize,
) -> Result<tonic::Streaming<Vec<u8>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(max_message);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let request = tonic::Request::new(tokio_stream::iter(messages));
    Ok(grpc
        .streaming(request, http::uri::PathAndQuery::from_static(path), Raw)
        .await?
        .into_inner())
}
