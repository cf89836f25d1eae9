//! A metric's value read against its datatype: a number (what ProAct stores), a null, or
//! something that is not a measurement (text, bytes, a dataset...), which the caller skips
//! and counts. A value in the wrong field for its datatype is an error: the payload lies
//! about what it carries.

use crate::error::{Error, ErrorKind};
use crate::pb::payload::metric::Value as Raw;
use crate::pb::payload::Metric;
use crate::pb::DataType;

/// What a metric carries, as far as ProAct is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A finite number.
    Number(f64),
    /// `is_null`, or no value at all: the metric's current value is unknown.
    Null,
    /// A value that is not a finite number; the label says what it was.
    Skipped(&'static str),
}

/// Reads `m`'s value as a `datatype` (a [`DataType`] code: the metric's own, or its birth's).
pub fn read(m: &Metric, datatype: u32, name: &str) -> Result<Value, Error> {
    if m.is_null == Some(true) {
        return Ok(Value::Null);
    }
    let Some(raw) = &m.value else { return Ok(Value::Null) };
    let dt = i32::try_from(datatype).ok().and_then(|d| DataType::try_from(d).ok());
    let wrong = || {
        let dt_name = dt.map_or_else(|| format!("unknown datatype {datatype}"), |d| d.as_str_name().to_string());
        Error::new(ErrorKind::WrongType, format!("metric {name:?} is a {dt_name} but carries {}", raw_name(raw)))
    };
    let number = |v: f64| if v.is_finite() { Value::Number(v) } else { Value::Skipped("non_finite") };
    Ok(match (dt, raw) {
        // Signed integers travel as their two's complement; narrow ones are accepted both
        // sign-extended to 32 bits and as their own width (encoders differ).
        (Some(DataType::Int8), Raw::IntValue(v)) => {
            let low = *v as u8 as i8;
            if (i32::from(low) as u32 == *v) || u32::from(*v as u8) == *v {
                Value::Number(f64::from(low))
            } else {
                return Err(wrong());
            }
        }
        (Some(DataType::Int16), Raw::IntValue(v)) => {
            let low = *v as u16 as i16;
            if (i32::from(low) as u32 == *v) || u32::from(*v as u16) == *v {
                Value::Number(f64::from(low))
            } else {
                return Err(wrong());
            }
        }
        (Some(DataType::Int32), Raw::IntValue(v)) => Value::Number(f64::from(*v as i32)),
        (Some(DataType::UInt8), Raw::IntValue(v)) if *v <= u32::from(u8::MAX) => Value::Number(f64::from(*v)),
        (Some(DataType::UInt16), Raw::IntValue(v)) if *v <= u32::from(u16::MAX) => Value::Number(f64::from(*v)),
        (Some(DataType::UInt32), Raw::IntValue(v)) => Value::Number(f64::from(*v)),
        // A UInt32 may exceed the 32-bit field: the specification allows the long one.
        (Some(DataType::UInt32), Raw::LongValue(v)) if *v <= u64::from(u32::MAX) => Value::Number(*v as f64),
        (Some(DataType::Int64), Raw::LongValue(v)) => Value::Number(*v as i64 as f64),
        (Some(DataType::UInt64), Raw::LongValue(v)) => Value::Number(*v as f64),
        (Some(DataType::Float), Raw::FloatValue(v)) => number(f64::from(*v)),
        (Some(DataType::Double), Raw::DoubleValue(v)) => number(*v),
        (Some(DataType::Boolean), Raw::BooleanValue(_)) => Value::Skipped("boolean"),
        (Some(DataType::DateTime), Raw::LongValue(_)) => Value::Skipped("datetime"),
        (Some(DataType::String | DataType::Text | DataType::Uuid), Raw::StringValue(_)) => Value::Skipped("text"),
        (Some(DataType::Bytes | DataType::File), Raw::BytesValue(_)) => Value::Skipped("bytes"),
        (Some(DataType::DataSet), Raw::DatasetValue(_)) => Value::Skipped("dataset"),
        (Some(DataType::Template), Raw::TemplateValue(_)) => Value::Skipped("template"),
        // Sparkplug 3.0 packs arrays into bytes (little-endian elements).
        (Some(d), Raw::BytesValue(_))
            if (DataType::Int8Array as i32..=DataType::DateTimeArray as i32).contains(&(d as i32)) =>
        {
            Value::Skipped("array")
        }
        (_, Raw::ExtensionValue(_)) => Value::Skipped("extension"),
        _ => return Err(wrong()),
    })
}

fn raw_name(v: &Raw) -> &'static str {
    match v {
        Raw::IntValue(_) => "an int_value",
        Raw::LongValue(_) => "a long_value",
        Raw::FloatValue(_) => "a float_value",
        Raw::DoubleValue(_) => "a double_value",
        Raw::BooleanValue(_) => "a boolean_value",
        Raw::StringValue(_) => "a string_value",
        Raw::BytesValue(_) => "a bytes_value",
        Raw::DatasetValue(_) => "a dataset_value",
        Raw::TemplateValue(_) => "a template_value",
        Raw::ExtensionValue(_) => "an extension_value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(v: Raw) -> Metric {
        Metric { value: Some(v), ..Default::default() }
    }

    fn num(v: Raw, dt: DataType) -> Result<Value, Error> {
        read(&metric(v), dt as u32, "m")
    }

    #[test]
    fn integers_read_as_the_specification_encodes_them() {
        // Int8 -1: sign-extended (Tahu's Java encoder) or its own width (others).
        assert_eq!(num(Raw::IntValue(0xFFFF_FFFF), DataType::Int8), Ok(Value::Number(-1.0)));
        assert_eq!(num(Raw::IntValue(0xFF), DataType::Int8), Ok(Value::Number(-1.0)));
        assert_eq!(num(Raw::IntValue(0x1_00), DataType::Int8).unwrap_err().kind, ErrorKind::WrongType);
        assert_eq!(num(Raw::IntValue(0xFFFF_8000), DataType::Int16), Ok(Value::Number(-32768.0)));
        assert_eq!(num(Raw::IntValue(0x8000_0000), DataType::Int32), Ok(Value::Number(-2_147_483_648.0)));
        assert_eq!(num(Raw::LongValue(u64::MAX), DataType::Int64), Ok(Value::Number(-1.0)));
        assert_eq!(num(Raw::IntValue(255), DataType::UInt8), Ok(Value::Number(255.0)));
        assert_eq!(num(Raw::IntValue(256), DataType::UInt8).unwrap_err().kind, ErrorKind::WrongType);
        assert_eq!(num(Raw::LongValue(u64::MAX), DataType::UInt64), Ok(Value::Number(u64::MAX as f64)));
    }

    #[test]
    fn floats_nulls_and_what_is_not_a_measurement() {
        assert_eq!(num(Raw::FloatValue(1.5), DataType::Float), Ok(Value::Number(1.5)));
        assert_eq!(num(Raw::DoubleValue(f64::NAN), DataType::Double), Ok(Value::Skipped("non_finite")));
        assert_eq!(num(Raw::DoubleValue(f64::INFINITY), DataType::Double), Ok(Value::Skipped("non_finite")));
        assert_eq!(num(Raw::BooleanValue(true), DataType::Boolean), Ok(Value::Skipped("boolean")));
        assert_eq!(num(Raw::StringValue("on".into()), DataType::String), Ok(Value::Skipped("text")));
        let null = Metric { is_null: Some(true), value: Some(Raw::DoubleValue(3.0)), ..Default::default() };
        assert_eq!(read(&null, DataType::Double as u32, "m"), Ok(Value::Null));
        assert_eq!(read(&Metric::default(), DataType::Double as u32, "m"), Ok(Value::Null));
    }

    #[test]
    fn a_value_in_the_wrong_field_is_refused() {
        let e = num(Raw::StringValue("85".into()), DataType::Double).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert!(
            e.detail.contains("\"m\"") && e.detail.contains("Double") && e.detail.contains("string_value"),
            "{}",
            e.detail
        );
        assert_eq!(num(Raw::DoubleValue(1.0), DataType::Float).unwrap_err().kind, ErrorKind::WrongType);
        assert_eq!(read(&metric(Raw::DoubleValue(1.0)), 99, "m").unwrap_err().kind, ErrorKind::WrongType);
        assert_eq!(read(&metric(Raw::DoubleValue(1.0)), 0, "m").unwrap_err().kind, ErrorKind::WrongType);
    }
}
