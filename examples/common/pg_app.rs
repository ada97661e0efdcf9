//! The example's stack, started with testcontainers: PostgreSQL (`rebound/postgres`,
//! restarted by the engine when it dies) and the demo app (`rebound/demo-app`,
//! storing its items in that PostgreSQL) on a network of their own. Every object
//! carries the label `rebound.run`; the app's port is published on 127.0.0.1 only.

use std::collections::HashMap;

use bollard::models::{NetworkCreateRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The two containers, their network, and the app's host port.
pub struct PgApp {
    /// `rebound/postgres`.
    pub db: Option<ContainerAsync<GenericImage>>,
    /// `rebound/demo-app --postgres …`.
    pub app: Option<ContainerAsync<GenericImage>>,
    /// The app's port 8080 on 127.0.0.1.
    pub app_port: u16,
    network: String,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl PgApp {
    /// Starts both, each once its healthcheck passes; `tag` makes the names unique
    /// and is the value of their `rebound.run` label.
    pub async fn start(tag: &str) -> Result<Self, Error> {
        let docker = bollard::Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        let network = format!("rebound-{tag}");
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                labels: Some(HashMap::from([(
                    "rebound.run".to_string(),
                    tag.to_string(),
                )])),
                ..Default::default()
            })
            .await?;
        let mut me = PgApp {
            db: None,
            app: None,
            app_port: 0,
            network: network.clone(),
        };
        let db_name = format!("rebound-{tag}-db");
        me.db = Some(
            GenericImage::new("rebound/postgres", "latest")
                .with_wait_for(WaitFor::healthcheck())
                .with_network(&network)
                .with_container_name(&db_name)
                .with_label("rebound.run", tag)
                // A crashed PostgreSQL comes back as a restart policy brings it.
                .with_host_config_modifier(|h| {
                    h.restart_policy = Some(RestartPolicy {
                        name: Some(RestartPolicyNameEnum::ALWAYS),
                        maximum_retry_count: None,
                    });
                })
                .start()
                .await?,
        );
        let app = GenericImage::new("rebound/demo-app", "latest")
            .with_exposed_port(ContainerPort::Tcp(8080))
            .with_wait_for(WaitFor::healthcheck())
            .with_network(&network)
            .with_container_name(format!("rebound-{tag}-app"))
            .with_label("rebound.run", tag)
            .with_cmd([
                "--postgres".to_string(),
                format!("host={db_name} user=postgres dbname=postgres"),
            ])
            // Published on loopback only, on a port the engine picks.
            .with_host_config_modifier(|h| {
                h.publish_all_ports = Some(false);
                h.port_bindings = Some(HashMap::from([(
                    "8080/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )]));
            })
            .start()
            .await?;
        me.app_port = app.get_host_port_ipv4(8080).await?;
        me.app = Some(app);
        Ok(me)
    }

    /// The container ids, as rebound's `containers` want them.
    pub fn ids(&self) -> [(&'static str, String); 2] {
        let id = |c: &Option<ContainerAsync<GenericImage>>| {
            c.as_ref().map(|c| c.id().to_string()).unwrap_or_default()
        };
        [("db", id(&self.db)), ("app", id(&self.app))]
    }
}

impl Drop for PgApp {
    fn drop(&mut self) {
        // The containers first (testcontainers removes them as they drop), then
        // their network.
        drop(self.app.take());
        drop(self.db.take());
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
