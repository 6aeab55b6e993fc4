//! The `message!` macro: one description per message drives its decoder, its
//! encoder and its defaults.
//!
//! A description lists the fields in wire order with their Rust type, an
//! optional default (Kafka's `"default"`), the versions they exist in, and,
//! for tagged fields, their tag:
//!
//! ```ignore
//! message! {
//!     pub struct PartitionProduceResponse {
//!         index: i32 => 0..,
//!         log_append_time_ms: i64 = -1 => 2..,
//!         current_leader: LeaderIdAndEpoch => 10..; tag 0,
//!     }
//! }
//! ```
//!
//! A field outside its versions is skipped on the wire and holds its default.
//! A tagged field is written only when it differs from its default, as Kafka
//! does: old librdkafka (kcat's 2.0.2) mis-skips tagged fields, so writing
//! defaults would break it. Nested structs are descriptions of their own and
//! see the version of the top-level message.

/// Describes a Kafka message (or a struct inside one); see the module docs.
#[macro_export]
macro_rules! message {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $fdoc:expr])*
                $field:ident : $ty:ty $(= $default:expr)? => $versions:expr $(; tag $tag:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $crate::__field_default!($ty $(, $default)?), )* }
            }
        }

        impl $crate::protocol::Wire for $name {
            #[allow(unused_mut, unused_variables)]
            fn decode<'a>(
                input: &'a [u8],
                cx: &$crate::protocol::DecodeCx<'_>,
            ) -> $crate::protocol::PResult<'a, Self> {
                let mut input = input;
                let mut this = Self::default();
                $( $crate::__decode_field!(input, cx, this.$field, $ty, $versions $(, $tag)?); )*
                if cx.flexible {
                    let (rest, ()) = $crate::protocol::primitives::tagged_fields(input, |tag, data| {
                        $( $crate::__decode_tagged!(tag, data, cx, this.$field, $ty, $versions $(, $tag)?); )*
                        Ok(false)
                    })?;
                    input = rest;
                }
                Ok((input, this))
            }

            #[allow(unused_mut, unused_variables)]
            fn encode<B: $crate::protocol::WireBuf>(&self, buf: &mut B, cx: &$crate::protocol::EncodeCx<'_>) {
                $( $crate::__encode_field!(self.$field, buf, cx, $versions $(, $tag)?); )*
                if cx.flexible {
                    // Defaults are cheap to build (no field default allocates).
                    let defaults = Self::default();
                    let mut tagged: u32 = 0;
                    $( $crate::__count_tagged!(tagged, self.$field, defaults.$field, cx, $versions $(, $tag)?); )*
                    $crate::protocol::primitives::put_uvarint(buf, tagged);
                    $( $crate::__encode_tagged!(self.$field, defaults.$field, buf, cx, $versions $(, $tag)?); )*
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_default {
    ($ty:ty) => {
        <$ty as Default>::default()
    };
    ($ty:ty, $default:expr) => {
        $default
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __in_versions {
    ($cx:expr, $versions:expr) => {
        ::core::ops::RangeBounds::<i16>::contains(&($versions), &$cx.version)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __decode_field {
    ($input:ident, $cx:ident, $place:expr, $ty:ty, $versions:expr) => {
        if $crate::__in_versions!($cx, $versions) {
            let (rest, value) = <$ty as $crate::protocol::Wire>::decode($input, $cx)?;
            $input = rest;
            $place = value;
        }
    };
    // Tagged: read from the tagged-field section instead.
    ($input:ident, $cx:ident, $place:expr, $ty:ty, $versions:expr, $tag:literal) => {};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __decode_tagged {
    ($tag_seen:ident, $data:ident, $cx:ident, $place:expr, $ty:ty, $versions:expr) => {};
    ($tag_seen:ident, $data:ident, $cx:ident, $place:expr, $ty:ty, $versions:expr, $tag:literal) => {
        if $tag_seen == $tag && $crate::__in_versions!($cx, $versions) {
            $place = $crate::protocol::primitives::tagged_value::<$ty>($tag_seen, $data, $cx)?;
            return Ok(true);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __encode_field {
    ($value:expr, $buf:ident, $cx:ident, $versions:expr) => {
        if $crate::__in_versions!($cx, $versions) {
            $crate::protocol::Wire::encode(&$value, $buf, $cx);
        }
    };
    ($value:expr, $buf:ident, $cx:ident, $versions:expr, $tag:literal) => {};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __count_tagged {
    ($n:ident, $value:expr, $default:expr, $cx:ident, $versions:expr) => {};
    ($n:ident, $value:expr, $default:expr, $cx:ident, $versions:expr, $tag:literal) => {
        if $crate::__in_versions!($cx, $versions) && $value != $default {
            $n += 1;
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __encode_tagged {
    ($value:expr, $default:expr, $buf:ident, $cx:ident, $versions:expr) => {};
    ($value:expr, $default:expr, $buf:ident, $cx:ident, $versions:expr, $tag:literal) => {
        if $crate::__in_versions!($cx, $versions) && $value != $default {
            $crate::protocol::primitives::put_tagged_value($buf, $tag, &$value, $cx);
        }
    };
}
