//! What the fuzz targets share: the frame reader driven as the host's
//! reader (`host/src/reader.rs`) drives it.

use wshost_proto::decode::{DecodeError, Decoder, Large, Read};

/// Feed `input` to `decoder` in pieces of at most `chunk` bytes, through
/// its buffer and, for frames over `threshold`, the large-frame path (the
/// frame taken out in `large`, which a later call may go on filling), as
/// the host does; hand each thing read to `read`. Returns at the first
/// error, or once all of `input` is in and nothing more is whole.
pub fn drive(
    decoder: &mut Decoder,
    large: &mut Option<Large>,
    mut input: &[u8],
    (chunk, threshold): (usize, usize),
    mut read: impl FnMut(Read),
) -> Result<(), DecodeError> {
    loop {
        if let Some(whole) = large.take_if(|l| l.is_complete()) {
            if let Some(got) = decoder.finish_large(whole)? {
                read(got);
            }
            continue;
        }
        if large.is_none() {
            if let Some(got) = decoder.parse()? {
                read(got);
                continue;
            }
            if decoder.large_frame_ahead(threshold).is_some() {
                *large = Some(decoder.start_large().expect("a frame ahead"));
                continue;
            }
        }
        if input.is_empty() {
            return Ok(());
        }
        let n = chunk.min(input.len());
        match large {
            Some(l) => {
                let n = n.min(l.missing());
                l.payload.extend_from_slice(&input[..n]);
                input = &input[n..];
            }
            None => {
                decoder.buffer().extend_from_slice(&input[..n]);
                input = &input[n..];
            }
        }
    }
}
