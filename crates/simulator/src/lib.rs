//! The sensor simulator: a fleet model ([`fleet`]) shared with the sample-data generator,
//! and a publisher ([`publisher`]) that sends seed-shaped JSON readings to the MQTT broker,
//! with failure episodes that drive temperatures past the critical threshold.

pub mod fleet;
pub mod publisher;
