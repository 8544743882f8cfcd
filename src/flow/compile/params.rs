//! `params:` of a trigger: typed query parameters with their bounds, allowed
//! values and defaults, checked against the same rules requests are.

use serde_saphyr::Spanned;

use crate::flow::model::{Param, ParamType};
use crate::flow::params::{check_value, coerce_default};
use crate::flow::raw::RawParam;

use super::cx::FileCx;

pub(super) fn compile_param(
    cx: &mut FileCx<'_>,
    name: String,
    raw: Spanned<RawParam>,
) -> Option<Param> {
    let loc = raw.referenced;
    let raw = raw.value;
    let ty = match raw.ty.value.as_str() {
        "string" => ParamType::String,
        "integer" => ParamType::Integer,
        "number" => ParamType::Number,
        "boolean" => ParamType::Boolean,
        other => {
            cx.error(raw.ty.referenced, format!("parameter `{name}`: unknown type `{other}` (string, integer, number or boolean)"));
            return None;
        }
    };
    let mut param = Param {
        name,
        ty,
        required: raw.required,
        default: None,
        allowed: raw.allowed.as_ref().map(|a| a.value.clone()),
        min: raw.min.as_ref().map(|m| m.value),
        max: raw.max.as_ref().map(|m| m.value),
        description: raw.description,
    };
    if matches!(ty, ParamType::String | ParamType::Boolean) {
        for bound in [&raw.min, &raw.max].into_iter().flatten() {
            cx.error(
                bound.referenced,
                format!(
                    "parameter `{}`: `min` and `max` apply to integer and number parameters",
                    param.name
                ),
            );
        }
    }
    if let (Some(min), Some(max)) = (param.min, param.max)
        && min > max
    {
        cx.error(
            loc,
            format!(
                "parameter `{}`: `min` {min} is greater than `max` {max}",
                param.name
            ),
        );
    }
    if let Some(allowed) = &raw.allowed {
        for v in &allowed.value {
            if let Err(why) = check_value(&param, v) {
                cx.error(
                    allowed.referenced,
                    format!("parameter `{}`: enum value {v} {why}", param.name),
                );
            }
        }
    }
    if let Some(default) = raw.default {
        if raw.required {
            cx.error(
                default.referenced,
                format!(
                    "parameter `{}` is required, so its `default` would never be used",
                    param.name
                ),
            );
        }
        match coerce_default(&param, &default.value) {
            Ok(v) => param.default = Some(v),
            Err(why) => cx.error(
                default.referenced,
                format!("parameter `{}`: default {}", param.name, why),
            ),
        }
    }
    Some(param)
}
