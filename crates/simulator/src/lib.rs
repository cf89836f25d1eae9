//! The sensor simulator: the fleet of [`proact_store::taxonomy`] measured by [`reading`], and a
//! publisher ([`publisher`]) that sends seed-shaped JSON readings to the MQTT broker, with
//! failure episodes that drive temperatures past the critical threshold; and the same fleet's
//! past in fast-forward ([`history`]), which the trainer's `backfill` writes into the archive;
//! and a Sparkplug B edge node whose device dies and is born again ([`sparkplug`]).

pub mod history;
pub mod publisher;
pub mod reading;
pub mod sparkplug;
