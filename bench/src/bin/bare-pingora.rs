//! A bare Pingora pass-through: the floor any Pingora gateway starts from.
//!
//! One `ProxyHttp` impl whose only hook is `upstream_peer`: every request goes
//! to one fixed upstream over plain HTTP, on Pingora's pooled keep-alive
//! connections. Pingora's `ServerConf` defaults except `threads = 1` and
//! `work_stealing = false` (what the gateway runs with in the load run), the
//! system allocator and the workspace's release profile (no LTO). The load run
//! (`bench/load/run.sh`) measures it beside nginx, HAProxy and the gateway, so
//! the gateway's cost can be read against Pingora's own.
//!
//! ```sh
//! bare-pingora 127.0.0.1:18086 127.0.0.1:18081   # LISTEN UPSTREAM
//! ```

use std::net::SocketAddr;

use anyhow::Context;
use async_trait::async_trait;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Server, Session, http_proxy_service};
use pingora::server::configuration::ServerConf;

/// The proxy: it knows its upstream's address and nothing else.
struct PassThrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for PassThrough {
    type CTX = ();

    fn new_ctx(&self) {}

    /// Every request to the one upstream, plain HTTP, no SNI.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!(
            "usage: bare-pingora LISTEN UPSTREAM   (e.g. 127.0.0.1:18086 127.0.0.1:18081)"
        );
    };
    let upstream: SocketAddr = upstream
        .parse()
        .with_context(|| format!("UPSTREAM: not an address: {upstream}"))?;

    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, PassThrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever()
}
