import { z } from "zod";

/** Admission control, quotas and prices in the config: what protects the service and the budget. */

const bound = {
  /** Jobs of the tier (or tenant) accepted and not yet started; a submission past it gets 503. */
  max_waiting: z.number().int().min(0).max(100_000_000).optional(),
  /** A submission whose estimated wait before its start exceeds this gets 503. */
  max_wait_seconds: z
    .number()
    .gt(0)
    .max(30 * 86_400)
    .optional(),
};

/**
 * Degrade instead of refuse: while the tier's estimated wait is over `when_wait_over_seconds`,
 * new jobs of the tier go to `model` (a cheaper or faster route) with max_tokens capped.
 */
const degradeSchema = z
  .object({
    model: z.string().min(1),
    max_tokens_cap: z.number().int().min(1).max(1_000_000).optional(),
    when_wait_over_seconds: z
      .number()
      .min(0)
      .max(30 * 86_400),
  })
  .strict();

export const tierAdmissionSchema = z.object({ ...bound, degrade: degradeSchema.optional() }).strict();

/** A tenant's own bounds, checked on top of its tier's. */
export const tenantAdmissionSchema = z.object(bound).strict();

export const admissionSchema = z
  .object({ paid: tierAdmissionSchema.optional(), free: tierAdmissionSchema.optional() })
  .strict();

/**
 * A tenant's budget, in UTC days and months. Usage is reserved at submission (the request's
 * estimate) and settled with the real usage when the job ends; the fleet shares the counters.
 */
export const quotaSchema = z
  .object({
    requests_per_day: z.number().int().min(0).max(1_000_000_000).optional(),
    tokens_per_day: z.number().int().min(0).max(1_000_000_000_000).optional(),
    usd_per_day: z.number().min(0).max(1_000_000).optional(),
    usd_per_month: z.number().min(0).max(10_000_000).optional(),
  })
  .strict();

/** USD per million tokens for one upstream model: overrides the price table (0 for self-hosted). */
export const modelPriceSchema = z
  .object({
    input_per_million: z.number().min(0).max(100_000),
    output_per_million: z.number().min(0).max(100_000),
    /** Cached input tokens (prompt cache reads), where the provider reports them; default: input. */
    cached_input_per_million: z.number().min(0).max(100_000).optional(),
  })
  .strict();

/** Per provider: upstream model name (or "*" for every model) -> price. */
export const providerPricesSchema = z.record(z.string().min(1), modelPriceSchema);

export type TierAdmission = z.infer<typeof tierAdmissionSchema>;
export type TenantAdmission = z.infer<typeof tenantAdmissionSchema>;
export type Quota = z.infer<typeof quotaSchema>;
export type ModelPrice = z.infer<typeof modelPriceSchema>;
