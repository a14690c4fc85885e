import { Router, type RequestHandler, type Response } from "express";
import { jsonBody } from "../signing";
import type { SwitchyardConfig, TenantConfig } from "@switchyard/core";
import type { WebhookService } from "../webhook-service";

/**
 * /v1/webhook-endpoints (CRUD, secret rotation, re-enable, deliveries, replay of failed ones),
 * /v1/webhook-deliveries/:id (read, replay) and /v1/webhook-secret (the tenant's own secret,
 * for jobs that carry their own webhook.url). Secrets appear only in create and rotate answers.
 */
export function webhooksRouter(
  service: WebhookService,
  config: SwitchyardConfig,
  tenantGate: RequestHandler[],
  signatures: RequestHandler,
): Router {
  const router = Router();
  const json = jsonBody(config);
  for (const path of ["/v1/webhook-endpoints", "/v1/webhook-deliveries", "/v1/webhook-secret"])
    router.use(path, ...tenantGate, json, signatures);

  const tenantOf = (res: Response): TenantConfig => res.locals.tenant as TenantConfig;
  const list = <T>(data: T[]) => ({ object: "list", data });

  router.post("/v1/webhook-endpoints", async (req, res) => {
    const ep = await service.create(tenantOf(res), req.body);
    res.set("location", `/v1/webhook-endpoints/${ep.id}`).status(201).json(ep);
  });
  router.get("/v1/webhook-endpoints", async (_req, res) => {
    res.json(list(await service.list(tenantOf(res))));
  });
  router.get("/v1/webhook-endpoints/:id", async (req, res) => {
    res.json(await service.get(tenantOf(res), String(req.params.id)));
  });
  router.delete("/v1/webhook-endpoints/:id", async (req, res) => {
    const id = String(req.params.id);
    await service.remove(tenantOf(res), id);
    res.json({ id, object: "webhook_endpoint", deleted: true });
  });
  router.post("/v1/webhook-endpoints/:id/rotate-secret", async (req, res) => {
    res.json(await service.rotate(tenantOf(res), String(req.params.id), req.body));
  });
  router.post("/v1/webhook-endpoints/:id/enable", async (req, res) => {
    res.json(await service.enable(tenantOf(res), String(req.params.id)));
  });
  router.get("/v1/webhook-endpoints/:id/deliveries", async (req, res) => {
    res.json(list(await service.deliveries(tenantOf(res), String(req.params.id), req.query)));
  });
  router.post("/v1/webhook-endpoints/:id/replay-failed", async (req, res) => {
    res.status(202).json(await service.replayFailed(tenantOf(res), String(req.params.id)));
  });

  router.get("/v1/webhook-deliveries/:id", async (req, res) => {
    res.json(await service.delivery(tenantOf(res), String(req.params.id)));
  });
  router.post("/v1/webhook-deliveries/:id/replay", async (req, res) => {
    res.status(202).json(await service.replay(tenantOf(res), String(req.params.id)));
  });

  router.get("/v1/webhook-secret", async (_req, res) => {
    res.json(await service.secretView(tenantOf(res)));
  });
  router.post("/v1/webhook-secret", async (req, res) => {
    res.json(await service.rotateTenantSecret(tenantOf(res), req.body));
  });
  return router;
}
