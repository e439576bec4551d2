//! The protobuf codec of the CRI services: prost's, except that a request that does not decode
//! is the caller's fault and is answered with InvalidArgument instead of Internal.

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

#[derive(Debug, Clone)]
pub struct CriCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for CriCodec<T, U> {
    fn default() -> Self {
        CriCodec {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for CriCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CriDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CriDecoder {
            inner: self.inner.decoder(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CriDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: prost::Message + Default> Decoder for CriDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.inner.decode(buf).map_err(|status| {
            Status::invalid_argument(format!("malformed request: {}", status.message()))
        })
    }
}
