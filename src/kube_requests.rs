//! `sluice_kube_requests_total{method,code}`: every request the controller's Kubernetes client sends
//! to the API server, counted by a tower layer under the client (so reflectors, reconcilers, the
//! leader elector and event recording are all seen, whichever code path made the call). The labels
//! are the HTTP method and the response's status code (`error` when no response came back): a
//! bounded set, like client-go's `rest_client_requests_total`, with no per-object labels.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

use crate::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: String,
}

/// The layer to add to a `kube::client::ClientBuilder`.
#[derive(Clone, Debug, Default)]
pub struct KubeRequestCounter {
    requests: Family<RequestLabels, Counter>,
}

impl KubeRequestCounter {
    /// Registers `sluice_kube_requests_total` on `metrics`; register once per process.
    pub fn register(metrics: &Metrics) -> Self {
        let me = Self::default();
        metrics.register(|r| {
            r.register(
                "kube_requests",
                "Requests to the Kubernetes API server by HTTP method and status code",
                me.requests.clone(),
            );
        });
        me
    }
}

impl<S> Layer<S> for KubeRequestCounter {
    type Service = CountedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountedService {
            inner,
            requests: self.requests.clone(),
        }
    }
}

/// The client's service stack with every call counted.
#[derive(Clone, Debug)]
pub struct CountedService<S> {
    inner: S,
    requests: Family<RequestLabels, Counter>,
}

type BoxedResponse<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CountedService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedResponse<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = method_label(request.method());
        let response = self.inner.call(request);
        let requests = self.requests.clone();
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            requests
                .get_or_create(&RequestLabels { method, code })
                .inc();
            result
        })
    }
}

/// The method as a label value; anything unusual is folded into `other` to keep the set bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in API server: DELETE is answered 404, PUT never gets an answer (a connection
    /// error), everything else 200.
    #[derive(Clone)]
    struct FakeServer;

    impl Service<Request<()>> for FakeServer {
        type Response = Response<()>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response<()>, &'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<()>) -> Self::Future {
            let status = match *request.method() {
                Method::PUT => return std::future::ready(Err("connection refused")),
                Method::DELETE => 404,
                _ => 200,
            };
            let response = Response::builder().status(status).body(()).unwrap();
            std::future::ready(Ok(response))
        }
    }

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/default/pods")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn every_request_is_counted_by_method_and_code() {
        let metrics = Metrics::new();
        let mut service = KubeRequestCounter::register(&metrics).layer(FakeServer);
        for method in [Method::GET, Method::GET, Method::PATCH, Method::DELETE] {
            service.call(request(method)).await.unwrap();
        }
        service.call(request(Method::OPTIONS)).await.unwrap();
        service.call(request(Method::PUT)).await.unwrap_err();

        let text = metrics.encode().unwrap();
        for line in [
            r#"sluice_kube_requests_total{method="GET",code="200"} 2"#,
            r#"sluice_kube_requests_total{method="PATCH",code="200"} 1"#,
            r#"sluice_kube_requests_total{method="DELETE",code="404"} 1"#,
            r#"sluice_kube_requests_total{method="other",code="200"} 1"#,
            r#"sluice_kube_requests_total{method="PUT",code="error"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
