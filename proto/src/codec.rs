//! The gRPC codec of Cairn's services: prost's, except that a request that
//! does not decode is `INVALID_ARGUMENT` (the client's bad data, never to
//! be retried) instead of tonic's default `INTERNAL`.
//!
//! OTLP's specification makes the difference matter: clients must not
//! retry `INVALID_ARGUMENT`, and a server that blames itself for a
//! malformed request invites support tickets for the wrong party.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// prost encoding and decoding; decode failures are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct CairnCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CairnCodec<T, U> {
    fn default() -> Self {
        CairnCodec(PhantomData)
    }
}

impl<T, U> Codec for CairnCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = InvalidArgumentDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// prost's decoder with its errors re-coded.
#[derive(Debug)]
pub struct InvalidArgumentDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for InvalidArgumentDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            Status::new(
                Code::InvalidArgument,
                format!("protobuf decode error: {}", s.message()),
            )
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
