//! Who may connect to this fake application: its token, the privileged intents it may use, and
//! the guilds one shard may hold, with Discord's close codes (4004, 4014, 4011). How a payload is
//! read is `gateway_server`'s.

use gateway_model::{CloseCode, Command, Identify, Intents};
use gateway_server::Rejection;

use crate::{GatewayConfig, World};

/// Judges an IDENTIFY or RESUME that came in order.
pub(crate) fn admit(
    command: &Command,
    config: &GatewayConfig,
    world: &World,
) -> Result<(), Rejection> {
    match command {
        Command::Identify(identify) => check_identify(identify, config, world),
        Command::Resume(resume) => check_token(&resume.token, config),
        _ => Ok(()),
    }
}

/// The token of an IDENTIFY or RESUME, with or without `Bot `, must be this application's.
fn check_token(token: &gateway_model::Token, config: &GatewayConfig) -> Result<(), Rejection> {
    let expected = gateway_model::Token::new(config.token.as_str());
    if token.expose_secret() == expected.expose_secret() {
        Ok(())
    } else {
        Err(Rejection::new(
            CloseCode::AuthenticationFailed,
            "d.token",
            "not this application's token",
        ))
    }
}

/// The rules IDENTIFY's own close codes stand for.
fn check_identify(
    identify: &Identify,
    config: &GatewayConfig,
    world: &World,
) -> Result<(), Rejection> {
    check_token(&identify.token, config)?;
    let intents = identify.intents;
    let disallowed = intents & Intents::PRIVILEGED & !config.allowed_intents;
    if !disallowed.is_empty() {
        return Err(Rejection::new(
            CloseCode::DisallowedIntents,
            "d.intents",
            format!("{disallowed:?} not enabled for this application"),
        ));
    }
    let guilds = match identify.shard {
        Some(shard) => world.guilds_of_shard(shard.number(), shard.total()).count(),
        None => world.guilds().len(),
    };
    if guilds > config.max_guilds_per_shard {
        return Err(Rejection::new(
            CloseCode::ShardingRequired,
            "d.shard",
            format!(
                "{guilds} guilds on one shard, over {}",
                config.max_guilds_per_shard
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorldConfig;

    fn code(text: &str) -> Option<u16> {
        let config = GatewayConfig::default();
        let world = World::new(WorldConfig::uniform(1, 2, 10));
        let command = gateway_server::read_command(text, 4096).expect("read");
        admit(&command, &config, &world)
            .err()
            .map(|r| r.code.as_u16())
    }

    #[test]
    fn the_token_and_the_privileged_intents_are_this_applications() {
        let props = r#""properties":{"os":"l","browser":"b","device":"d"}"#;
        let identify = |token: &str, intents: u64| {
            format!(r#"{{"op":2,"d":{{"token":"{token}",{props},"intents":{intents}}}}}"#)
        };
        assert_eq!(code(&identify("nope", 1)), Some(4004));
        assert_eq!(code(&identify("Bot testkit-token", 1)), None);
        let wrong = r#"{"op":6,"d":{"token":"other-secret-token","session_id":"s","seq":1}}"#;
        assert_eq!(code(wrong), Some(4004));
        let ok = r#"{"op":6,"d":{"token":"testkit-token","session_id":"s","seq":1}}"#;
        assert_eq!(code(ok), None);
    }
}
