export async function auditView(view) {}
