//! Making a step's image present in the engine, with the pusher's rights.
//!
//! Base and admin-allowed images are already local. An image of this
//! server's registry is pulled as the pipeline's actor: a read-only token of
//! theirs, valid for a few minutes, is minted for the pull and revoked right
//! after, so the registry's own authorisation decides, as for `docker pull`.

use crate::executor::Context;
use crate::image_policy::ImageSource;
use chrono::Utc;
use slipway_domain::Scope;
use slipway_runtime::images::{pull_image, RegistryAuth};
use slipway_store::NewTokenRecord;

/// How long the pull token lives if its revocation is missed.
const PULL_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);

/// Checks `image` against the policy again (the pipeline may have been queued
/// before a setting changed) and pulls it when it comes from the registry.
pub(crate) async fn ensure_image(ctx: &Context, image: &str) -> Result<(), String> {
    let actor = &ctx.pipeline.actor;
    match ctx.ci.may_use_image(image, actor).await? {
        ImageSource::Local => {
            // An admin-allowed image (`ci_allowed_images`, e.g. `postgres:16*`)
            // that this engine does not have yet is pulled from its registry,
            // as `docker compose` would; base images are made locally.
            let present = slipway_runtime::images::image_exists(&ctx.rt, image)
                .await
                .unwrap_or(true);
            if present || image.starts_with("slipway/") {
                return Ok(());
            }
            pull_image(&ctx.rt, image, None).await.map_err(|e| {
                format!(
                    "image {image} is allowed but not on this machine, and pulling it failed: {e}"
                )
            })
        }
        ImageSource::Registry { .. } => {
            let store = ctx.ci.store();
            let user = store
                .user_by_name(actor)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("user {actor} no longer exists; cannot pull {image}"))?;
            let token = slipway_auth::new_token();
            let info = store
                .create_token(NewTokenRecord {
                    user_id: user.id,
                    name: &format!("ci-pull-{}", ctx.pipeline.id),
                    digest: &token.digest,
                    prefix: &token.prefix,
                    scopes: &[Scope::Read],
                    expires_at: Some(Utc::now() + PULL_TOKEN_LIFETIME),
                    renew_secs: None,
                })
                .await
                .map_err(|e| e.to_string())?;
            let auth = RegistryAuth {
                username: user.username.clone(),
                password: token.secret,
            };
            let pulled = pull_image(&ctx.rt, image, Some(&auth)).await;
            if let Err(e) = store.revoke_token(user.id, info.id).await {
                tracing::warn!(error = %e, "could not revoke a CI pull token");
            }
            pulled.map_err(|e| format!("pulling {image}: {e}"))
        }
    }
}
