//! `-S` (WASI) and `-W` (WebAssembly) options, spelled as `wasmtime run`
//! spells them: `-S KEY[=VAL][,KEY[=VAL]...]`, a boolean `VAL` being
//! `y`/`yes`/`true` or `n`/`no`/`false` (a bare `KEY` is `true`). Only the
//! keys `wasm-pin run` honours are accepted; any other is an error naming
//! them (a silently ignored option would be a lie about what runs).

/// The WASI options (`-S`), with `wasmtime run`'s defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasiOptions {
    /// `p3`: link WASI 0.3 (`wasi:*@0.3.x`) for components; on by default.
    pub p3: bool,
    /// `preview0`: link the `wasi_unstable` module for core modules; on by default.
    pub preview0: bool,
    /// `inherit-network`: the guest may use every address (and TCP and UDP).
    pub inherit_network: bool,
    /// `allow-ip-name-lookup`: `wasi:sockets/ip-name-lookup` resolves names.
    pub allow_ip_name_lookup: Option<bool>,
    /// `tcp`: `wasi:sockets` TCP (on by default; addresses still need `inherit-network`).
    pub tcp: Option<bool>,
    /// `udp`: `wasi:sockets` UDP (on by default; addresses still need `inherit-network`).
    pub udp: Option<bool>,
    /// `inherit-env`: the guest sees the host's whole environment (then `--env`).
    pub inherit_env: bool,
}

impl Default for WasiOptions {
    fn default() -> Self {
        WasiOptions {
            p3: true,
            preview0: true,
            inherit_network: false,
            allow_ip_name_lookup: None,
            tcp: None,
            udp: None,
            inherit_env: false,
        }
    }
}

/// The WebAssembly options (`-W`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmOptions {
    /// `component-model-async`: the component-model async ABI that WASI 0.3
    /// components use; on by default (as in `wasmtime` 48 builds with it).
    pub component_model_async: bool,
}

impl Default for WasmOptions {
    fn default() -> Self {
        WasmOptions {
            component_model_async: true,
        }
    }
}

/// One `KEY[=VAL]` of an option list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyValue {
    key: String,
    value: Option<String>,
}

/// One `-S`/`-W` argument: its `KEY[=VAL]`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionList(Vec<KeyValue>);

/// Parses one `-S`/`-W` argument: comma-separated `KEY[=VAL]`s.
pub fn parse_list(s: &str) -> Result<OptionList, String> {
    s.split(',')
        .map(|item| match item.split_once('=') {
            _ if item.is_empty() => Err(format!("`{s}`: empty option")),
            Some((key, value)) => Ok(KeyValue {
                key: key.into(),
                value: Some(value.into()),
            }),
            None => Ok(KeyValue {
                key: item.into(),
                value: None,
            }),
        })
        .collect::<Result<_, _>>()
        .map(OptionList)
}

fn boolean(kv: &KeyValue) -> Result<bool, String> {
    match kv.value.as_deref() {
        None | Some("y" | "yes" | "true") => Ok(true),
        Some("n" | "no" | "false") => Ok(false),
        Some(v) => Err(format!("-{}={v}: expected y, yes, true, n, no or false", kv.key)),
    }
}

const WASI_KEYS: &str = "cli, p3, preview0, inherit-network, allow-ip-name-lookup, tcp, udp, inherit-env";

impl WasiOptions {
    /// Applies every `-S` list, in order (a later key overrides an earlier one).
    pub fn from_lists(lists: &[OptionList]) -> Result<Self, String> {
        let mut o = WasiOptions::default();
        for kv in lists.iter().flat_map(|l| &l.0) {
            match kv.key.as_str() {
                // WASI itself: always linked here (`wasmtime run -Scli=n`
                // would run a module with no WASI at all).
                "cli" | "common" if boolean(kv)? => {}
                "cli" | "common" => return Err("-Scli=n: wasm-pin run always provides WASI".into()),
                "p3" => o.p3 = boolean(kv)?,
                "preview0" => o.preview0 = boolean(kv)?,
                "inherit-network" => o.inherit_network = boolean(kv)?,
                "allow-ip-name-lookup" => o.allow_ip_name_lookup = Some(boolean(kv)?),
                "tcp" => o.tcp = Some(boolean(kv)?),
                "udp" => o.udp = Some(boolean(kv)?),
                "inherit-env" => o.inherit_env = boolean(kv)?,
                "http" | "nn" | "threads" | "config" | "keyvalue" | "tls" => {
                    return Err(format!("-S{}: wasi-{} is not provided by wasm-pin run", kv.key, kv.key))
                }
                k => return Err(format!("-S{k}: unknown WASI option (supported: {WASI_KEYS})")),
            }
        }
        Ok(o)
    }
}

impl WasmOptions {
    /// Applies every `-W` list, in order.
    pub fn from_lists(lists: &[OptionList]) -> Result<Self, String> {
        let mut o = WasmOptions::default();
        for kv in lists.iter().flat_map(|l| &l.0) {
            match kv.key.as_str() {
                "component-model-async" => o.component_model_async = boolean(kv)?,
                k => {
                    return Err(format!(
                        "-W{k}: unknown WebAssembly option (supported: component-model-async)"
                    ))
                }
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_as_the_testsuite_adapter_passes_them() {
        let s = WasiOptions::from_lists(&[parse_list("p3,inherit-network").unwrap()]).unwrap();
        assert!(s.p3 && s.inherit_network);
        let w = WasmOptions::from_lists(&[parse_list("component-model-async").unwrap()]).unwrap();
        assert!(w.component_model_async);
    }

    #[test]
    fn later_values_override_and_bad_ones_are_errors() {
        let lists = [parse_list("p3=n").unwrap(), parse_list("tcp=no,udp=yes").unwrap()];
        let s = WasiOptions::from_lists(&lists).unwrap();
        assert_eq!((s.p3, s.tcp, s.udp), (false, Some(false), Some(true)));
        assert!(WasiOptions::from_lists(&[parse_list("p3=maybe").unwrap()]).is_err());
        assert!(WasiOptions::from_lists(&[parse_list("bogus").unwrap()])
            .unwrap_err()
            .contains("unknown WASI option"));
        assert!(WasiOptions::from_lists(&[parse_list("http").unwrap()]).is_err());
        assert!(WasmOptions::from_lists(&[parse_list("gc").unwrap()]).is_err());
        assert!(parse_list("p3,,tcp").is_err());
    }
}
