import { z } from "zod";
import {
  ApiError,
  badRequest,
  conflict,
  notFound,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import {
  DELIVERY_ID_PATTERN,
  ENDPOINT_ID_PATTERN,
  WEBHOOK_EVENTS,
  deliveryView,
  webhookUrlProblem,
  type AddressPolicy,
  type DeliveryQueue,
  DELIVERY_STATUSES,
  type DeliveryView,
  type Endpoint,
  type EndpointView,
  type Resolver,
  type SigningSecretView,
  type WebhookStore,
} from "@switchyard/webhooks";
import { parseBody } from "./validate";

export const createEndpointSchema = z
  .object({
    url: z.string().min(1).max(2048),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).max(WEBHOOK_EVENTS.length).optional(),
    description: z.string().max(500).optional(),
  })
  .strict();

const MAX_GRACE_SECONDS = 7 * 86_400;
export const rotateSchema = z
  .object({ grace_seconds: z.number().int().min(0).max(MAX_GRACE_SECONDS).optional() })
  .strict();

export type EndpointWithSecret = EndpointView & { secret: string };

/** Endpoints, signing secrets, delivery lists and replays: the API's webhook logic, free of HTTP. */
export class WebhookService {
  constructor(
    private readonly config: SwitchyardConfig,
    private readonly store: WebhookStore,
    private readonly queue: DeliveryQueue,
    private readonly policy: AddressPolicy,
    private readonly resolver?: Resolver,
  ) {}

  /** 400 naming `path` when the URL may not be used as a webhook target. */
  async checkUrl(url: string, path: string): Promise<void> {
    const problem = await webhookUrlProblem(url, this.policy, this.resolver);
    if (problem) throw badRequest(`${path}: ${problem}`, [{ path, message: problem }]);
  }

  async create(tenant: TenantConfig, body: unknown): Promise<EndpointWithSecret> {
    const input = parseBody(createEndpointSchema, body);
    await this.checkUrl(input.url, "url");
    const max = this.config.webhooks.max_endpoints_per_tenant;
    if ((await this.store.countEndpoints(tenant.id)) >= max)
      throw conflict(`a tenant can have at most ${max} webhook endpoints; delete one first`);
    const { endpoint, secret } = await this.store.createEndpoint(tenant.id, {
      url: input.url,
      events: input.events ?? [...WEBHOOK_EVENTS],
      ...(input.description ? { description: input.description } : {}),
    });
    return { ...endpoint, secret };
  }

  async list(tenant: TenantConfig): Promise<EndpointView[]> {
    return (await this.store.endpoints(tenant.id)).map((e) => this.store.view(e));
  }

  async endpoint(tenant: TenantConfig, id: string): Promise<Endpoint> {
    const ep = ENDPOINT_ID_PATTERN.test(id) ? await this.store.endpoint(id, tenant.id) : undefined;
    if (!ep) throw notFound(`no webhook endpoint ${id.slice(0, 64)}`);
    return ep;
  }

  async get(tenant: TenantConfig, id: string): Promise<EndpointView> {
    return this.store.view(await this.endpoint(tenant, id));
  }

  async remove(tenant: TenantConfig, id: string): Promise<void> {
    await this.endpoint(tenant, id);
    if (!(await this.store.deleteEndpoint(tenant.id, id))) throw notFound(`no webhook endpoint ${id}`);
  }

  private graceMs(body: unknown): number {
    const { grace_seconds } = parseBody(rotateSchema, body ?? {});
    return grace_seconds !== undefined
      ? grace_seconds * 1000
      : Math.round(this.config.webhooks.secret_grace_hours * 3_600_000);
  }

  async rotate(tenant: TenantConfig, id: string, body: unknown): Promise<EndpointWithSecret> {
    await this.endpoint(tenant, id);
    const secret = await this.store.rotateEndpointSecret(id, this.graceMs(body));
    return { ...(await this.get(tenant, id)), secret };
  }

  /** Turns a disabled endpoint back on (its URL is checked again first). */
  async enable(tenant: TenantConfig, id: string): Promise<EndpointView> {
    const ep = await this.endpoint(tenant, id);
    await this.checkUrl(ep.url, "url");
    await this.store.setEndpointStatus(id, "enabled");
    return this.get(tenant, id);
  }

  async deliveries(
    tenant: TenantConfig,
    id: string,
    query: Record<string, unknown>,
  ): Promise<DeliveryView[]> {
    await this.endpoint(tenant, id);
    const status = query.status === undefined ? undefined : String(query.status);
    const wanted = status === undefined ? undefined : DELIVERY_STATUSES.find((s) => s === status);
    if (status !== undefined && wanted === undefined)
      throw badRequest("status must be pending, succeeded or failed", [
        { path: "query.status", message: "invalid" },
      ]);
    const limit = query.limit === undefined ? 100 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw badRequest("limit must be an integer from 1 to 1000", [
        { path: "query.limit", message: "invalid" },
      ]);
    return this.store.listDeliveries(tenant.id, id, {
      limit,
      ...(wanted ? { status: wanted } : {}),
    });
  }

  async delivery(tenant: TenantConfig, id: string): Promise<DeliveryView> {
    const d = DELIVERY_ID_PATTERN.test(id) ? await this.store.delivery(id, tenant.id) : undefined;
    if (!d) throw notFound(`no webhook delivery ${id.slice(0, 80)}`);
    return deliveryView(d);
  }

  jobDeliveries(tenant: TenantConfig, jobId: string): Promise<DeliveryView[]> {
    return this.store.jobDeliveries(tenant.id, jobId);
  }

  /** Sends a delivery again (same webhook-id and body, a fresh timestamp and signature). */
  async replay(tenant: TenantConfig, id: string): Promise<DeliveryView> {
    const d = await this.delivery(tenant, id);
    if (d.status === "pending")
      throw new ApiError(
        409,
        "conflict_error",
        `delivery ${id} is still pending; it will be attempted again by itself`,
      );
    if (d.endpoint_id) {
      const ep = await this.store.endpoint(d.endpoint_id, tenant.id);
      if (!ep) throw conflict(`the endpoint of delivery ${id} was deleted`);
      if (ep.status === "disabled")
        throw conflict(`endpoint ${ep.id} is disabled (${ep.disabled_reason ?? ""}); enable it first`);
    }
    await this.requeue(d.id);
    return this.delivery(tenant, id);
  }

  /** Replays every failed delivery of an endpoint (newest first, up to the index's bound). */
  async replayFailed(tenant: TenantConfig, id: string): Promise<{ replayed: number }> {
    const ep = await this.endpoint(tenant, id);
    if (ep.status === "disabled")
      throw conflict(`endpoint ${ep.id} is disabled (${ep.disabled_reason ?? ""}); enable it first`);
    const failed = await this.store.listDeliveries(tenant.id, id, {
      status: "failed",
      limit: this.config.webhooks.max_deliveries_per_endpoint,
    });
    for (const d of failed) await this.requeue(d.id);
    return { replayed: failed.length };
  }

  private async requeue(deliveryId: string): Promise<void> {
    const replay = await this.store.incrementReplays(deliveryId);
    await this.store.updateDelivery(deliveryId, { status: "pending", next_attempt_at: Date.now() });
    await this.queue.add([{ deliveryId, replay }]);
  }

  async secretView(tenant: TenantConfig): Promise<SigningSecretView> {
    const view = await this.store.tenantSecretView(tenant.id);
    if (!view)
      throw notFound("this tenant has no signing secret yet; create one with POST /v1/webhook-secret");
    return view;
  }

  async rotateTenantSecret(
    tenant: TenantConfig,
    body: unknown,
  ): Promise<SigningSecretView & { secret: string }> {
    const { secret, view } = await this.store.rotateTenantSecret(tenant.id, this.graceMs(body));
    return { ...view, secret };
  }

  /** A job's own webhook.url needs a public target and a tenant secret to sign with. */
  async checkJobWebhook(tenant: TenantConfig, url: string): Promise<void> {
    await this.checkUrl(url, "webhook.url");
    if ((await this.store.tenantSecrets(tenant.id)).length === 0)
      throw badRequest(
        "webhook.url: deliveries to a job's own URL are signed with your tenant secret; create it first with POST /v1/webhook-secret",
        [{ path: "webhook.url", message: "no signing secret" }],
      );
  }
}
