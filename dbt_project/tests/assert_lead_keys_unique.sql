-- int_activities_accumulated keys leads by hash(lead_id) for speed; two leads sharing a hash
-- would pool their activities, so a collision must fail the build (odds ~1e-8 at 1M leads).
select
    {{ key_hash('lead_id') }} as lead_key,
    count(*) as n_leads
from {{ ref('stg_crm__leads') }}
group by {{ key_hash('lead_id') }}
having count(*) > 1
