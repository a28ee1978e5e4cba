//! The one place a setting is defined. Each entry of a [`settings!`] list
//! gives, once: its config key (the field's name), its flag (the key with
//! dashes, unless an `#[arg(long = ...)]` says otherwise), its doc (the
//! flag's `--help` and its line in the reference), its kind (which checks
//! it: [`crate::value`]), its default, and whether a route may set it.
//!
//! From the list the macro makes two structs: the settings as given (each
//! `Option`, `None` when not given; it is at once the flags, through
//! clap's derive, and the file's table, through serde's) and the settings
//! resolved (what the host runs with), plus the merge of the one into the
//! other and the reference's rows. Adding a setting is adding an entry.

use crate::value::{Name, Value};

/// Who may set a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The server as a whole: a flag, or the file's table.
    Server,
    /// A route's own `limits` may set it too, over the server's.
    Route,
}

/// One setting, as the reference and the tests see it.
#[derive(Debug, Clone)]
pub struct Setting {
    /// Its config key (and field name).
    pub key: &'static str,
    /// Its flag, without the dashes.
    pub flag: String,
    /// Its doc, as `--help` gives it.
    pub doc: String,
    /// How the value is written (`SECS`, `N`, ...); empty for a switch.
    pub unit: String,
    /// Its default, as the reference shows it.
    pub default: String,
    pub scope: Scope,
}

/// The flag of each argument of `command`, by id.
pub(crate) fn flag_of(command: &clap::Command, id: &str) -> String {
    let arg = command.get_arguments().find(|a| a.get_id() == id);
    arg.and_then(|a| a.get_long())
        .map_or_else(|| id.replace('_', "-"), str::to_string)
}

/// How the argument `id` of `command` is written: its value's name; none
/// for a switch (its value is optional: `--deflate`).
pub(crate) fn unit_of(command: &clap::Command, id: &str) -> String {
    let arg = command.get_arguments().find(|a| a.get_id() == id);
    let switch = arg.is_some_and(|a| a.get_num_args().is_some_and(|n| n.min_values() == 0));
    let name = arg
        .and_then(|a| a.get_value_names())
        .and_then(|names| names.first());
    match (switch, name) {
        (false, Some(name)) => name.to_string(),
        _ => String::new(),
    }
}

/// The settings' `--help` lines, each with its default appended (clap's
/// own `[default: ...]` would need a default clap applies, and then a flag
/// not given could not be told from one given).
pub(crate) fn document(mut command: clap::Command, settings: &[Setting]) -> clap::Command {
    for s in settings {
        let help = format!("{} [default: {}]", s.doc, s.default);
        command = command.mut_arg(s.key, |arg| arg.help(help));
    }
    command
}

/// The arguments of `A`, alone.
pub(crate) fn arguments<A: clap::Args>() -> clap::Command {
    A::augment_args(clap::Command::new("settings"))
}

/// `name`'s two names, for errors.
pub(crate) fn name<'a>(key: &'a str, flag: &'a str) -> Name<'a> {
    Name { key, flag }
}

/// A checked value of kind `K`.
pub(crate) fn resolve<K: Value>(raw: K::Raw, key: &str, flag: &str) -> Result<K::Resolved, String> {
    K::resolve(raw, name(key, flag))
}

/// Define settings: see the module's doc.
macro_rules! settings {
    (
        $(#[$smeta:meta])*
        pub struct $given:ident => $resolved:ident {
            given { $( $(#[$xmeta:meta])* pub $xkey:ident : $xty:ty ),* $(,)? }
            resolved { $( $(#[$rmeta:meta])* pub $rkey:ident : $rty:ty = $rdefault:expr ),* $(,)? }
            $(
                $(#[doc = $doc:literal])*
                $(#[arg($($arg:tt)*)])*
                $scope:ident $key:ident : [$($raw:tt)+] $kind:ty = $default:expr;
            )*
        }
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $given {
            $( $(#[$xmeta])* #[arg(skip)] pub $xkey: $xty, )*
            $(
                $(#[doc = $doc])*
                #[arg(long, value_name = <$kind as $crate::value::Value>::UNIT)]
                $(#[arg($($arg)*)])*
                pub $key: Option<$($raw)+>,
            )*
        }

        /// The settings the host runs with (see the given ones' docs).
        #[derive(Debug, Clone, PartialEq)]
        pub struct $resolved {
            $( $(#[doc = $doc])* pub $key: <$kind as $crate::value::Value>::Resolved, )*
            $( $(#[$rmeta])* pub $rkey: $rty, )*
        }

        impl Default for $resolved {
            fn default() -> Self {
                $resolved {
                    $( $key: $default, )*
                    $( $rkey: $rdefault, )*
                }
            }
        }

        impl $given {
            /// Every setting of this table, in order.
            pub fn settings() -> Vec<$crate::settings::Setting> {
                let command = $crate::settings::arguments::<$given>();
                let defaults = $resolved::default();
                vec![$(
                    $crate::settings::Setting {
                        key: stringify!($key),
                        flag: $crate::settings::flag_of(&command, stringify!($key)),
                        doc: command
                            .get_arguments()
                            .find(|a| a.get_id() == stringify!($key))
                            .and_then(|a| a.get_help())
                            .map(|h| h.to_string())
                            .unwrap_or_default(),
                        unit: $crate::settings::unit_of(&command, stringify!($key)),
                        default: <$kind as $crate::value::Value>::show(&defaults.$key),
                        scope: $crate::settings::Scope::$scope,
                    },
                )*]
            }

            /// `command` with each of these settings' default in its help.
            pub fn document(command: clap::Command) -> clap::Command {
                $crate::settings::document(command, &Self::settings())
            }

            /// Set in `to` what is given here, each value checked.
            pub fn apply(&self, to: &mut $resolved) -> Result<(), String> {
                let command = $crate::settings::arguments::<$given>();
                $(
                    if let Some(raw) = &self.$key {
                        let flag = $crate::settings::flag_of(&command, stringify!($key));
                        to.$key = $crate::settings::resolve::<$kind>(
                            raw.clone(),
                            stringify!($key),
                            &flag,
                        )?;
                    }
                )*
                Ok(())
            }

            /// The first key given here that only the server as a whole
            /// may set (a route's `limits` may not).
            pub fn server_wide(&self) -> Option<&'static str> {
                [$(
                    (
                        stringify!($key),
                        self.$key.is_some()
                            && $crate::settings::Scope::$scope == $crate::settings::Scope::Server,
                    ),
                )*]
                .into_iter()
                .find_map(|(key, given)| given.then_some(key))
            }
        }
    };
}

pub(crate) use settings;
