//! Serializes only chosen fields of a value into JSON, skipping the rest without
//! serializing them.
//!
//! The report writer judges every record the way `check`, `diff` and `summary` do
//! (through [`super::outcome::TargetOutcome`], from JSON field names, so fields other
//! modules add are picked up), but at tens of thousands of records a second it cannot
//! afford to serialize a record's DNS observations twice or parse them back. A
//! projection costs only what it keeps: a skipped field's value is never visited.

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use serde_json::{Map, Value};

/// How much of a field to keep.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// The whole value.
    Whole,
    /// Only these fields of it (an object; anything else is kept whole).
    Fields(&'static [(&'static str, Keep)]),
}

fn keep_of(fields: &'static [(&'static str, Keep)], key: &str) -> Option<Keep> {
    fields
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, keep)| *keep)
}

fn project_field<T: Serialize + ?Sized>(keep: Keep, value: &T) -> Result<Value, serde_json::Error> {
    match keep {
        Keep::Whole => value.serialize(serde_json::value::Serializer),
        Keep::Fields(fields) => value.serialize(Projector { fields }),
    }
}

/// Serializes structs and maps keeping only `fields`; any other value whole.
#[derive(Debug, Clone, Copy)]
pub struct Projector {
    pub fields: &'static [(&'static str, Keep)],
}

/// A struct or map being projected.
pub struct Projection {
    fields: &'static [(&'static str, Keep)],
    map: Map<String, Value>,
    /// The pending key of a map entry, when it is one to keep.
    key: Option<(String, Keep)>,
}

impl SerializeStruct for Projection {
    type Ok = Value;
    type Error = serde_json::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        if let Some(keep) = keep_of(self.fields, key) {
            self.map.insert(key.to_owned(), project_field(keep, value)?);
        }
        Ok(())
    }

    fn end(self) -> Result<Value, Self::Error> {
        Ok(Value::Object(self.map))
    }
}

impl SerializeMap for Projection {
    type Ok = Value;
    type Error = serde_json::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.key = match key.serialize(serde_json::value::Serializer)? {
            Value::String(key) => keep_of(self.fields, &key).map(|keep| (key, keep)),
            _ => None,
        };
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        if let Some((key, keep)) = self.key.take() {
            self.map.insert(key, project_field(keep, value)?);
        }
        Ok(())
    }

    fn end(self) -> Result<Value, Self::Error> {
        Ok(Value::Object(self.map))
    }
}

type Whole = serde_json::value::Serializer;
/// The plain `serde_json::Value` serializer, for values kept whole.
const WHOLE: Whole = serde_json::value::Serializer;

impl Serializer for Projector {
    type Ok = Value;
    type Error = serde_json::Error;
    type SerializeSeq = <Whole as Serializer>::SerializeSeq;
    type SerializeTuple = <Whole as Serializer>::SerializeTuple;
    type SerializeTupleStruct = <Whole as Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = <Whole as Serializer>::SerializeTupleVariant;
    type SerializeMap = Projection;
    type SerializeStruct = Projection;
    type SerializeStructVariant = <Whole as Serializer>::SerializeStructVariant;

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Projection, Self::Error> {
        Ok(Projection {
            fields: self.fields,
            map: Map::new(),
            key: None,
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Projection, Self::Error> {
        Ok(Projection {
            fields: self.fields,
            map: Map::new(),
            key: None,
        })
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, Self::Error> {
        value.serialize(self)
    }

    // Everything else is kept whole.
    fn serialize_bool(self, v: bool) -> Result<Value, Self::Error> {
        WHOLE.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Self::Error> {
        WHOLE.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Self::Error> {
        WHOLE.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Self::Error> {
        WHOLE.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Self::Error> {
        WHOLE.serialize_i64(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Self::Error> {
        WHOLE.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Self::Error> {
        WHOLE.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Self::Error> {
        WHOLE.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Self::Error> {
        WHOLE.serialize_u64(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Self::Error> {
        WHOLE.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Self::Error> {
        WHOLE.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<Value, Self::Error> {
        WHOLE.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<Value, Self::Error> {
        WHOLE.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Self::Error> {
        WHOLE.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<Value, Self::Error> {
        WHOLE.serialize_none()
    }
    fn serialize_unit(self) -> Result<Value, Self::Error> {
        WHOLE.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<Value, Self::Error> {
        WHOLE.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<Value, Self::Error> {
        WHOLE.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Self::Error> {
        WHOLE.serialize_newtype_variant(name, index, variant, value)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        WHOLE.serialize_seq(len)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        WHOLE.serialize_tuple(len)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        WHOLE.serialize_tuple_struct(name, len)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        WHOLE.serialize_tuple_variant(name, index, variant, len)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        WHOLE.serialize_struct_variant(name, index, variant, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    #[derive(Serialize)]
    struct Assessment {
        verdict: &'static str,
        method: Option<&'static str>,
        evidence: Vec<&'static str>,
    }

    #[derive(Serialize)]
    struct Section {
        #[serde(flatten)]
        assessment: Assessment,
        ip: &'static str,
        big: Vec<u32>,
    }

    #[derive(Serialize)]
    struct Record {
        domain: &'static str,
        http: Option<Box<Section>>,
        tls: Option<Section>,
        blocking: Option<&'static str>,
        other: Vec<u32>,
    }

    const STAGE: &[(&str, Keep)] = &[("verdict", Keep::Whole), ("method", Keep::Whole)];
    const RECORD: &[(&str, Keep)] = &[
        ("domain", Keep::Whole),
        ("http", Keep::Fields(STAGE)),
        ("tls", Keep::Fields(STAGE)),
        ("blocking", Keep::Whole),
    ];

    #[test]
    fn keeps_only_the_chosen_fields_through_flatten_and_options() {
        let record = Record {
            domain: "a.test",
            http: Some(Box::new(Section {
                assessment: Assessment {
                    verdict: "rst_injection",
                    method: None,
                    evidence: vec!["reset"],
                },
                ip: "198.18.0.1",
                big: vec![1, 2, 3],
            })),
            tls: None,
            blocking: Some("http"),
            other: vec![4, 5],
        };
        let value = record.serialize(Projector { fields: RECORD }).unwrap();
        assert_eq!(
            value,
            json!({
                "domain": "a.test",
                "http": {"verdict": "rst_injection", "method": null},
                "tls": null,
                "blocking": "http",
            })
        );
    }
}
